"""Background services for Python programs on a station, each on its own thread:
`ConnectionService` checks the WATS server, `QueueService` uploads the queue (the service
without the folder watching). Synchronous: `start()` and `stop()` return when done.
"""

from pywats_client.services.connection import ConnectionService
from pywats_client.services.queue import QueueService

__all__ = ["ConnectionService", "QueueService"]
