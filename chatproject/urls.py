from django.contrib import admin
from django.urls import include, path

from chat.api.hooks import hook_view
from chat.api.uploads import file_view, thumbnail_view
from chat.metrics import metrics_view

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("api/", include("chat.api.urls")),
    path("metrics", metrics_view, name="metrics"),
    # Attachments' files (PROTOCOL.md 8): the room's visibility is checked on every request.
    path("files/<str:attachment_id>/", file_view, name="file"),
    path("files/<str:attachment_id>/thumbnail/", thumbnail_view, name="file-thumbnail"),
    # Incoming webhooks (PROTOCOL.md 9): the secret in the path is the credential.
    path("hooks/<str:secret>/", hook_view, name="hook"),
    path("", include("chat.urls")),
]
