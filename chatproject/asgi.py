"""ASGI entry point: Django for HTTP, ChatConsumer for WebSockets (see chat.auth)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatproject.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from chat.auth import ChatAuthMiddleware  # noqa: E402
from chat.limits import BodyLimitMiddleware, install_daphne_limits  # noqa: E402
from chat.routing import websocket_urlpatterns  # noqa: E402
from chat.serving import install_graceful_shutdown, tune_garbage_collector  # noqa: E402

application = ProtocolTypeRouter(
    {
        # Bodies over CHAT_MAX_BODY: 413 before they are read (chat/limits.py).
        "http": BodyLimitMiddleware(django_asgi_app),
        "websocket": ChatAuthMiddleware(URLRouter(websocket_urlpatterns)),
    }
)

# Under Daphne or uvicorn, SIGTERM closes sockets with 1001 and drains before exiting (chat/serving.py).
install_graceful_shutdown()
install_daphne_limits()
tune_garbage_collector()
