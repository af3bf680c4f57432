"""/api/: v1 of the REST API, its OpenAPI schema and interactive docs (assets served locally)."""

from django.urls import include, path, re_path
from drf_spectacular.utils import extend_schema
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.decorators import api_view, authentication_classes, permission_classes, throttle_classes

from .. import protocol
from ..protocol import ChatError
from . import live, uploads, views
from . import moderation, notifications
from . import bots
from . import notices
from . import subscriptions


@extend_schema(exclude=True)
@api_view(["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])
@authentication_classes([])
@permission_classes([])
@throttle_classes([])
def not_found(request, *args, **kwargs):
    """Any other /api/v1/ path: a JSON 404 like the API's own."""
    raise ChatError(protocol.NOT_FOUND, "No such API endpoint.")


v1 = [
    path("auth/token/", views.TokenView.as_view(), name="api-token"),
    path("rooms/", views.RoomListView.as_view(), name="api-rooms"),
    path("rooms/<str:slug>/", views.RoomDetailView.as_view(), name="api-room"),
    path("rooms/<str:slug>/members/", views.RoomMembersView.as_view(), name="api-room-members"),
    path("rooms/<str:slug>/members/<str:username>/", views.RoomMemberView.as_view(), name="api-room-member"),
    path("rooms/<str:slug>/messages/", views.RoomMessagesView.as_view(), name="api-room-messages"),
    path("rooms/<str:slug>/uploads/", uploads.upload_view, name="api-room-uploads"),
    path("messages/<int:message_id>/", views.MessageView.as_view(), name="api-message"),
    path("rooms/<str:slug>/read/", live.RoomReadView.as_view(), name="api-room-read"),
    path("dms/", live.DirectMessagesView.as_view(), name="api-dms"),
    path("rooms/<str:slug>/mutes/", moderation.RoomMutesView.as_view(), name="api-room-mutes"),
    path("rooms/<str:slug>/mutes/<str:username>/", moderation.RoomMuteView.as_view(), name="api-room-mute"),
    path("rooms/<str:slug>/bans/", moderation.RoomBansView.as_view(), name="api-room-bans"),
    path("rooms/<str:slug>/bans/<str:username>/", moderation.RoomBanView.as_view(), name="api-room-ban"),
    path("messages/<int:message_id>/thread/", views.MessageThreadView.as_view(), name="api-message-thread"),
    path("messages/<int:message_id>/reactions/", views.MessageReactionsView.as_view(), name="api-message-reactions"),
    path("messages/<int:message_id>/reactions/<str:emoji>/", views.MessageReactionView.as_view(),
         name="api-message-reaction"),
    path("messages/<int:message_id>/report/", moderation.MessageReportView.as_view(), name="api-message-report"),
    path("notifications/", notifications.NotificationsView.as_view(), name="api-notifications"),
    path("notifications/read/", notifications.NotificationsReadView.as_view(), name="api-notifications-read"),
    path("me/", notifications.MeView.as_view(), name="api-me"),
    path("bots/", bots.BotsView.as_view(), name="api-bots"),
    path("bots/<str:username>/", bots.BotView.as_view(), name="api-bot"),
    path("rooms/<str:slug>/webhooks/", bots.RoomWebhooksView.as_view(), name="api-room-webhooks"),
    path("rooms/<str:slug>/webhooks/<int:webhook_id>/", bots.RoomWebhookView.as_view(), name="api-room-webhook"),
    path("auth/connect-token/", views.ConnectTokenView.as_view(), name="api-connect-token"),
    path("rooms/<str:slug>/notices/", notices.RoomNoticesView.as_view(), name="api-room-notices"),
    path("rooms/<str:slug>/subscriptions/", subscriptions.RoomSubscriptionsView.as_view(), name="api-room-subscriptions"),
    path("rooms/<str:slug>/subscriptions/<int:subscription_id>/", subscriptions.RoomSubscriptionView.as_view(),
         name="api-room-subscription"),
    path("rooms/<str:slug>/subscriptions/<int:subscription_id>/deliveries/",
         subscriptions.RoomSubscriptionDeliveriesView.as_view(), name="api-room-subscription-deliveries"),
]

urlpatterns = [
    path("v1/", include(v1)),
    # [\s\S]: a path may hold a newline (%0A), which `.` would not match.
    re_path(r"^v1/(?:[\s\S]*/)?$", not_found),  # paths without the slash still get APPEND_SLASH
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
]
