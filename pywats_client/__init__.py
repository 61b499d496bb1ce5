"""pywats-client: the headless WATS client for test stations.

Watches folders for files written by test equipment, converts each into a WATS report (WSJF),
keeps every report in a durable directory-state queue and uploads it to a WATS server.
"""

__version__ = "0.1.0"
