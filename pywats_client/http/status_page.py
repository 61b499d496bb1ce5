"""The status page a technician opens on a phone (`GET /` of the control API): one column, large
type, refreshed by the browser every 10 s, no script; built from the status snapshot and queue
counts, every piece of text HTML-escaped (file names and server messages are untrusted).
"""

from __future__ import annotations

import html
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

from pywats_client.outcomes import ServerState

REFRESH_SECONDS = 10
REASON_SHOWN = 240  # characters of a failure reason on the page (/status has it all)

# What each failure kind means to someone standing at the station.
KIND_LABELS = {
    "rejected": "Rejected by the server",
    "transient": "Server error \u2014 will retry",
    "offline": "Server unreachable \u2014 will retry",
    "auth": "Credentials refused",
    "conversion": "Could not convert the file",
    "disk_full": "Disk full",
}

_STYLE = """
*{box-sizing:border-box}
html{font-size:18px;-webkit-text-size-adjust:100%}
body{margin:0;background:#f3f4f6;color:#111827;
 font-family:system-ui,-apple-system,"Segoe UI",Roboto,"Noto Sans",sans-serif;line-height:1.4}
main{max-width:40rem;margin:0 auto;padding:1rem}
h1{font-size:1.6rem;margin:0;overflow-wrap:anywhere}
h2{font-size:1.15rem;margin:1.5rem 0 .5rem}
.sub{margin:.2rem 0 1rem;color:#4b5563;font-size:.9rem}
.banner{border-radius:.6rem;padding:.9rem 1rem;border-left:.5rem solid}
.banner p{margin:0}
.headline{font-size:1.35rem;font-weight:700}
.detail{margin-top:.3rem!important;overflow-wrap:anywhere}
.ok{background:#e7f6ec;border-color:#1e7b3a;color:#0f3d1d}
.warn{background:#fff4db;border-color:#b7791f;color:#5c3b07}
.bad{background:#fde8e8;border-color:#c0262d;color:#6b1014}
.counts{display:grid;grid-template-columns:1fr 1fr;gap:.6rem;margin:0}
.counts div{background:#fff;border-radius:.6rem;padding:.6rem .8rem;border:1px solid #e5e7eb}
.counts dt{font-size:.9rem;color:#4b5563}
.counts dd{margin:0;font-size:2rem;font-weight:700;font-variant-numeric:tabular-nums}
.counts .alert dd{color:#c0262d}
ul.warnings{margin:.6rem 0 0;padding:0;list-style:none}
ul.warnings li{margin-top:.5rem;padding:.6rem .8rem;border-radius:.6rem;overflow-wrap:anywhere}
ol.events{margin:0;padding:0;list-style:none;background:#fff;border-radius:.6rem;
 border:1px solid #e5e7eb}
ol.events li{padding:.6rem .8rem;border-top:1px solid #e5e7eb;overflow-wrap:anywhere}
ol.events li:first-child{border-top:0}
ol.events p{margin:0}
.what{font-weight:600}
.when{font-size:.85rem;color:#4b5563;font-weight:400}
.kind{font-size:.9rem;font-weight:600;color:#a0181e}
.why{font-size:.9rem;color:#374151;margin-top:.15rem!important}
.id{font-family:ui-monospace,monospace;font-size:.75rem;color:#6b7280}
.none{color:#4b5563;margin:0}
footer{margin:2rem 0 1rem;font-size:.85rem;color:#4b5563}
footer a{color:#1d4ed8}
"""


def render(status: Mapping[str, Any], queue: Mapping[str, int], *, instance: str = "default",
           station: str = "", now: float | None = None) -> str:
    """The whole page. `status` is the service's status snapshot (ServiceStatus.to_dict()),
    `queue` the number of reports per queue state, `now` the time to measure ages from."""
    now = time.time() if now is None else now
    name = station or f"instance {instance}"
    tone, headline, detail = _health(status, now)
    parts = [
        "<!doctype html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f'<meta http-equiv="refresh" content="{REFRESH_SECONDS}">',
        f"<title>{_e(name)} \u00b7 pywats-client</title>",
        f"<style>{_STYLE}</style>",
        "</head>",
        "<body>",
        "<main>",
        "<header>",
        f"<h1>{_e(name)}</h1>",
        f'<p class="sub">pywats-client {_e(status.get("version") or "")} \u00b7 instance '
        f'{_e(instance)} \u00b7 {_e(_uptime(status, now))}</p>',
        "</header>",
        f'<section class="banner {tone}" id="health">',
        f'<p class="headline">{_e(headline)}</p>',
        *([f'<p class="detail">{_e(detail)}</p>'] if detail else []),
        "</section>",
        *_warnings(status),
        *_counts(queue, int(status.get("error_files") or 0)),
        *_error_files(status, now),
        *_failures(status.get("recent_failures") or [], now),
        *_uploads(status.get("recent_uploads") or [], now),
        "<footer>",
        f"<p>Updated {_e(_clock(status.get('updated_at'), now))}; this page refreshes every "
        f"{REFRESH_SECONDS} s. Converted {int(status.get('converted') or 0)} file(s), "
        f"{int(status.get('conversion_errors') or 0)} conversion error(s) since start.</p>",
        '<p><a href="/status">status (JSON)</a> \u00b7 <a href="/queue/pending">pending</a>'
        ' \u00b7 <a href="/queue/failed">failed</a> \u00b7 <a href="/metrics">metrics</a></p>',
        "</footer>",
        "</main>",
        "</body>",
        "</html>",
    ]
    return "\n".join(parts) + "\n"


def _health(status: Mapping[str, Any], now: float) -> tuple[str, str, str]:
    """(tone, headline, detail): the one thing to know first."""
    state = status.get("state") or "unknown"
    server = status.get("server") or ServerState.UNKNOWN
    why = str(status.get("server_detail") or "")
    last = status.get("last_upload_at")
    last_text = f"Last upload {_ago(last, now)}." if last else "No upload since start."
    if state in ("starting", "stopping", "stopped"):
        return "warn", f"Service {state}", "The page shows what was last known."
    if server == ServerState.PAUSED:
        return ("bad", "Uploads paused",
                f"The server refused the credentials or URL: {why}. Nothing is lost; fix "
                "server_url or api_token in config.json and uploads resume by themselves.")
    if status.get("disk_full"):
        return ("bad", "Disk full",
                "Reports cannot be written; new files wait in the watch folders until there "
                "is room.")
    if status.get("station_fault"):
        return ("bad", "Cannot write the queue",
                f"{status.get('station_fault')}. New files wait in the watch folders and are "
                "tried again; fix the permissions or the disk.")
    if status.get("conversions_paused"):
        return ("bad", "Conversions paused",
                f"{status.get('stuck_conversions')} converter(s) are stuck; new files wait. "
                "Restart the service (pywats-client restart).")
    if server == ServerState.OFFLINE:
        return ("warn", "Server unreachable",
                f"{why}. Reports are kept and sent when it is back. {last_text}")
    errors = int(status.get("error_files") or 0)
    if (status.get("disk_low") or status.get("folders_unavailable") or errors
            or status.get("poison_files") or status.get("waiting_for_processes")):
        return "warn", "Needs attention", f"Uploads work, but see below. {last_text}"
    if server == ServerState.ONLINE:
        return "ok", "Uploading normally", f"Server online. {last_text}"
    return "ok", "Running", f"No contact with the server yet. {last_text}"


def _warnings(status: Mapping[str, Any]) -> list[str]:
    items = []
    if status.get("disk_full"):
        items.append("Disk full: new files wait in the watch folders.")
    elif status.get("disk_low"):
        items.append(f"Disk nearly full: {status.get('disk_free_mb')} MB free for the queue.")
    for folder in status.get("folders_unavailable") or []:
        items.append(f"Watch folder unavailable (missing, unmounted or unreadable): {folder}. "
                     "Its files wait until it is back.")
    errors = int(status.get("error_files") or 0)
    if errors:
        items.append(f"{errors} file(s) could not be converted and wait in an error folder: "
                     "fix each as its .error.txt note says, then move it back into its watch "
                     "folder.")
    if status.get("poison_files"):
        items.append(f"{status.get('poison_files')} file(s) made the service die while they were "
                     "converted and were set aside in an error folder (see the log).")
    if status.get("waiting_for_processes"):
        items.append(f"{status.get('waiting_for_processes')} file(s) name their process and wait "
                     "for the server's process list (sent once the server is reachable).")
    if not items:
        return []
    return ['<ul class="warnings" id="warnings">',
            *(f'<li class="warn">{_e(text)}</li>' for text in items), "</ul>"]


def _counts(queue: Mapping[str, int], error_files: int = 0) -> list[str]:
    tiles = [("pending", "Waiting to upload"), ("processing", "Uploading now"),
             ("failed", "Failed"), ("completed", "Uploaded (kept)")]
    if queue.get("corrupt"):
        tiles.append(("corrupt", "Damaged files"))
    counts = {**queue, "error-files": error_files}
    tiles.append(("error-files", "In error folders"))
    out = ['<section id="queue">', "<h2>Queue</h2>", '<dl class="counts">']
    for state, label in tiles:
        n = int(counts.get(state, 0))
        alert = ' class="alert"' if state in ("failed", "corrupt", "error-files") and n else ""
        out.append(f'<div{alert} id="count-{state}"><dt>{_e(label)}</dt><dd>{n}</dd></div>')
    out += ["</dl>", "</section>"]
    return out


def _error_files(status: Mapping[str, Any], now: float) -> list[str]:
    """The newest files in the error folders, with the reason from each one's note."""
    files = status.get("error_files_newest") or []
    if not files:
        return []
    total = int(status.get("error_files") or 0)
    heading = "In the error folders" + (f" (newest {len(files)} of {total})"
                                        if total > len(files) else "")
    out = ['<section id="error-files">', f"<h2>{_e(heading)}</h2>", '<ol class="events">']
    for item in files:
        path = str(item.get("path") or "")
        out += ["<li>", f'<p class="what">{_e(os.path.basename(path))}</p>',
                f'<p class="when">{_e(_clock(item.get("at"), now))}</p>',
                f'<p class="why">{_e(_reason({"reason": item.get("reason")}))}</p>',
                f'<p class="id">{_e(os.path.dirname(path))}</p>', "</li>"]
    return [*out, "</ol>", "</section>"]


def _failures(events: list[Mapping[str, Any]], now: float) -> list[str]:
    def failure(event: Mapping[str, Any]) -> list[str]:
        kind = str(event.get("kind") or "")
        label = KIND_LABELS.get(kind, kind or "Failed")
        return [f'<p class="kind">{_e(label)} <span class="when">\u00b7 '
                f'{_e(_clock(event.get("at"), now))}</span></p>',
                f'<p class="why">{_e(_reason(event))}</p>']

    return _events("failures", "Recent failures", events, failure)


def _uploads(events: list[Mapping[str, Any]], now: float) -> list[str]:
    return _events("uploads", "Recent uploads", events,
                   lambda event: [f'<p class="when">{_e(_clock(event.get("at"), now))}</p>'])


def _events(section: str, title: str, events: list[Mapping[str, Any]],
            details: Callable[[Mapping[str, Any]], list[str]]) -> list[str]:
    """A list of events, each its file, its `details` and its report id; "None" when empty."""
    out = [f'<section id="{section}">', f"<h2>{title}</h2>"]
    if not events:
        return [*out, '<p class="none">None since start.</p>', "</section>"]
    out.append('<ol class="events">')
    for event in events:
        out += ["<li>", *_subject(event), *details(event), *_report_id(event), "</li>"]
    return [*out, "</ol>", "</section>"]


def _subject(event: Mapping[str, Any]) -> list[str]:
    """The file's name: what a technician recognises (the report id when there is none)."""
    source = str(event.get("source") or "")
    name = os.path.basename(source) or source or str(event.get("report_id") or "")
    return [f'<p class="what">{_e(name)}</p>'] if name else []


def _report_id(event: Mapping[str, Any]) -> list[str]:
    report_id = str(event.get("report_id") or "")
    source = str(event.get("source") or "")
    return [f'<p class="id">{_e(report_id)}</p>'] if report_id and source else []


def _reason(event: Mapping[str, Any]) -> str:
    """The reason, without the file name it often starts with (shown just above it)."""
    reason = str(event.get("reason") or "")
    name = os.path.basename(str(event.get("source") or ""))
    if name and reason.startswith(f"{name}: "):
        reason = reason[len(name) + 2:]
    if len(reason) > REASON_SHOWN:
        reason = reason[:REASON_SHOWN].rstrip() + "\u2026"
    return reason


def _clock(epoch: Any, now: float) -> str:
    if not isinstance(epoch, (int, float)) or not epoch:
        return "never"
    same_day = time.localtime(epoch)[:3] == time.localtime(now)[:3]
    text = time.strftime("%H:%M:%S" if same_day else "%Y-%m-%d %H:%M", time.localtime(epoch))
    return f"{text}, {_ago(epoch, now)}"


def _ago(epoch: Any, now: float) -> str:
    seconds = max(0, int(now - float(epoch)))
    if seconds < 60:
        return "just now" if seconds < 5 else f"{seconds} s ago"
    if seconds < 3600:
        return f"{seconds // 60} min ago"
    if seconds < 86400:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min ago"
    return f"{seconds // 86400} days ago"


def _uptime(status: Mapping[str, Any], now: float) -> str:
    started = status.get("started_at")
    if not isinstance(started, (int, float)) or not started:
        return ""
    return f"started {_ago(started, now)}"


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)
