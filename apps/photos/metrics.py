"""Photo metrics (Prometheus names, CONVENTIONS 16)."""

from prometheus_client import Counter

PHOTO_UPLOADS_COMPLETED = Counter(
    "homepocket_photo_uploads_completed_total", "Uploads marked available after the size check."
)
PHOTO_UPLOADS_REFUSED = Counter(
    "homepocket_photo_uploads_refused_total",
    "Uploads refused at complete (size_mismatch, too_large) or by the embedded store (too_large, too_short, signature).",
    ["reason"],
)
PHOTO_OBJECT_BYTES = Counter(
    "homepocket_photo_object_bytes_total", "Bytes streamed through the embedded mode's object URLs.", ["direction"]
)
PHOTO_CLEANUP_REMOVED = Counter(
    "homepocket_photo_cleanup_removed_total", "Objects and rows removed by the cleanup.", ["kind"]
)
