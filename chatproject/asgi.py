"""ASGI entry point: Django for HTTP, ChatConsumer for WebSockets (see chat.auth), and the
process tuning that a server process holding thousands of sockets needs."""

import gc
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatproject.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from chat import realtime  # noqa: E402
from chat.auth import ChatAuthMiddleware  # noqa: E402
from chat.limits import BodyLimitMiddleware, install_daphne_limits  # noqa: E402
from chat.routing import websocket_urlpatterns  # noqa: E402
from chat.serving import install_graceful_shutdown  # noqa: E402
from chat.serving.redact import install as install_log_redaction  # noqa: E402

application = ProtocolTypeRouter(
    {
        # Bodies over CHAT_MAX_BODY: 413 before they are read (chat/limits.py).
        "http": BodyLimitMiddleware(django_asgi_app),
        "websocket": ChatAuthMiddleware(URLRouter(websocket_urlpatterns)),
    }
)

# The cyclic garbage collector's full passes walk every object of a process holding
# thousands of sockets: pauses of up to 160 ms were measured at 1,000 sockets and 1,400
# messages/s (every socket waits for them). Objects of the loaded application are frozen
# out of those passes, and young collections run every 50,000 allocations instead of 700.
GC_THRESHOLD = (50_000, 20, 10)


def tune_garbage_collector() -> None:
    """Call once the application is loaded."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)


# Under Daphne or uvicorn, SIGTERM closes sockets with 1001 and drains before exiting (chat/serving/).
install_graceful_shutdown(current_hub=realtime.current_hub)
install_daphne_limits()
# Connect tokens travel in WebSocket URLs: the access logs write them redacted.
install_log_redaction()
tune_garbage_collector()
