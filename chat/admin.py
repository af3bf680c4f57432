"""The Django admin, for moderation (PROTOCOL.md 5).

Staff with `chat.moderate` (superusers have it) see rooms, memberships, messages, mutes,
bans, site bans, reports and the moderation log. Nothing here writes a model: every change
is an admin action that calls a service, so open sockets see it at once and the moderation
log records it, exactly as when the same thing is done over the API or the socket.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Exists, OuterRef, Q
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.utils import timezone
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.text import Truncator

from . import rules, services
from .models import Membership, Message, ModerationLog, Mute, Reaction, Report, Room, RoomBan, SiteBan, active_until_q
from .models import DeliveryAttempt, Subscription
from .protocol import ChatError

User = get_user_model()


# --- shared -----------------------------------------------------------------------------


class ModeratorAdmin(admin.ModelAdmin):
    """Visible to staff moderators; read-only except through actions that call services."""

    def has_module_permission(self, request) -> bool:
        return rules.is_site_moderator(request.user)

    def has_view_permission(self, request, obj=None) -> bool:
        return rules.is_site_moderator(request.user)

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def has_moderate_permission(self, request) -> bool:
        """For actions declared with permissions=["moderate"]."""
        return rules.is_site_moderator(request.user)

    def run(self, request, items: Iterable, call: Callable[[Any], Any], *, done: str) -> None:
        _run(self, request, items, call, done=done)


def _run(model_admin, request, items: Iterable, call: Callable[[Any], Any], *, done: str) -> None:
    """Call ``call`` on each item; tell the moderator how many succeeded, and each refusal."""
    succeeded = 0
    for item in items:
        try:
            call(item)
            succeeded += 1
        except ChatError as error:
            model_admin.message_user(request, f"{item}: {error.detail}", messages.ERROR)
    if succeeded:
        model_admin.message_user(request, f"{done}: {succeeded}.", messages.SUCCESS)


class RestrictForm(forms.Form):
    until = forms.DateTimeField(
        required=False,
        label="Until (UTC)",
        help_text="Empty: until lifted.",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
    )
    reason = forms.CharField(required=False, max_length=services.moderation.REASON_MAX,
                             widget=forms.Textarea(attrs={"rows": 3, "cols": 60}))


def _restrict_step(model_admin: admin.ModelAdmin, request, queryset, *, title: str, targets: list,
                   apply: Callable[[Any, Any, str], Any]):
    """An action in two steps: a page asking for `until` and `reason`, then ``apply(target,
    until, reason)`` for each target. Posting `apply` with the action does both at once."""
    form = RestrictForm(request.POST if "apply" in request.POST else None)
    if form.is_bound and form.is_valid():
        until, reason = form.cleaned_data["until"], form.cleaned_data["reason"]
        _run(model_admin, request, targets, lambda target: apply(target, until, reason), done=title)
        return None
    context = {
        **model_admin.admin_site.each_context(request),
        "title": title,
        "form": form,
        "targets": targets,
        "selected": queryset.values_list("pk", flat=True),
        "action": request.POST.get("action", ""),
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        "opts": model_admin.model._meta,
    }
    return TemplateResponse(request, "chat/admin/restrict.html", context)


class RoomTarget:
    """A user in a room, for mute and ban actions."""

    def __init__(self, room: Room, user):
        self.room, self.user = room, user

    def __str__(self) -> str:
        return f"{self.user.username} in {self.room.slug}"


def _room_targets(pairs: Iterable[tuple[Room, Any]]) -> list[RoomTarget]:
    seen, targets = set(), []
    for room, user in pairs:
        if (room.pk, user.pk) not in seen:
            seen.add((room.pk, user.pk))
            targets.append(RoomTarget(room, user))
    return targets


def _distinct_users(users: Iterable) -> list:
    return list({user.pk: user for user in users}.values())


def _mute(request):
    def apply(target: RoomTarget, until, reason):
        access = rules.room_access(user=request.user, door=rules.Door.ADMIN, room=target.room)
        services.mute_set(access=access, actor=request.user, user=target.user, until=until, reason=reason)
    return apply


def _room_ban(request):
    def apply(target: RoomTarget, until, reason):
        access = rules.room_access(user=request.user, door=rules.Door.ADMIN, room=target.room)
        services.room_ban_set(access=access, actor=request.user, user=target.user, until=until, reason=reason)
    return apply


def _site_ban(request):
    def apply(user, until, reason):
        services.site_ban_set(actor=request.user, user=user, until=until, reason=reason)
    return apply


# --- direct messages: not the admin's to browse -----------------------------------------
#
# A DM (Room.dm_key set) is a private conversation between two people. Staff moderate rooms, not
# people's mail: DM rooms and their memberships are not listed, and of a DM's messages only those
# someone reported are (through the report and in the message list). docs/decisions.md.


def _reported_or_not_dm(queryset):
    """``queryset`` (of messages) without the messages of DMs that nobody reported."""
    reported = Report.objects.filter(message=OuterRef("pk"))
    return queryset.filter(Q(room__dm_key__isnull=True) | Exists(reported))


# --- rooms and memberships --------------------------------------------------------------


@admin.register(Room)
class RoomAdmin(ModeratorAdmin):
    list_display = ["slug", "name", "private", "locked", "owner", "seq", "created_at"]
    list_filter = ["locked", "private"]
    search_fields = ["slug", "name", "owner__username"]
    list_select_related = ["owner"]
    actions = ["lock_rooms", "unlock_rooms"]

    def get_queryset(self, request):
        return super().get_queryset(request).filter(dm_key__isnull=True)

    def _set_locked(self, request, queryset, locked: bool, done: str) -> None:
        def call(room):
            access = rules.room_access(user=request.user, door=rules.Door.ADMIN, room=room)
            services.room_update(access=access, locked=locked, actor=request.user)
        self.run(request, queryset, call, done=done)

    @admin.action(description="Lock the selected rooms (only moderators post)", permissions=["moderate"])
    def lock_rooms(self, request, queryset):
        self._set_locked(request, queryset, True, "Locked")

    @admin.action(description="Unlock the selected rooms", permissions=["moderate"])
    def unlock_rooms(self, request, queryset):
        self._set_locked(request, queryset, False, "Unlocked")


@admin.register(Membership)
class MembershipAdmin(ModeratorAdmin):
    list_display = ["user", "room", "role", "created_at"]
    list_filter = ["role", ("room", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["user__username", "room__slug"]
    list_select_related = ["user", "room"]
    actions = ["mute_members", "ban_members", "ban_members_from_site"]

    def get_queryset(self, request):
        return super().get_queryset(request).filter(room__dm_key__isnull=True)

    @admin.action(description="Mute the selected members in their room…", permissions=["moderate"])
    def mute_members(self, request, queryset):
        targets = _room_targets((m.room, m.user) for m in queryset)
        return _restrict_step(self, request, queryset, title="Mute", targets=targets, apply=_mute(request))

    @admin.action(description="Ban the selected members from their room…", permissions=["moderate"])
    def ban_members(self, request, queryset):
        targets = _room_targets((m.room, m.user) for m in queryset)
        return _restrict_step(self, request, queryset, title="Ban from the room", targets=targets,
                              apply=_room_ban(request))

    @admin.action(description="Ban the selected members from the site…", permissions=["moderate"])
    def ban_members_from_site(self, request, queryset):
        users = _distinct_users(m.user for m in queryset)
        return _restrict_step(self, request, queryset, title="Ban from the site", targets=users,
                              apply=_site_ban(request))


# --- messages ---------------------------------------------------------------------------


class ReportedFilter(admin.SimpleListFilter):
    title = "reported"
    parameter_name = "reported"

    def lookups(self, request, model_admin):
        return [("open", "Open reports"), ("any", "Ever reported"), ("no", "Never reported")]

    def queryset(self, request, queryset):
        if self.value() == "open":
            return queryset.filter(reports__status=Report.Status.OPEN).distinct()
        if self.value() == "any":
            return queryset.filter(reports__isnull=False).distinct()
        if self.value() == "no":
            return queryset.filter(reports__isnull=True)
        return queryset


class ReadOnlyInline(admin.TabularInline):
    """A message's replies or reactions, listed for staff; changed only through the services."""

    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_view_permission(self, request, obj=None) -> bool:
        return rules.is_site_moderator(request.user)


class ReplyInline(ReadOnlyInline):
    model = Message
    fk_name = "reply_to"
    verbose_name, verbose_name_plural = "reply", "replies"
    fields = readonly_fields = ["seq", "author", "body", "created_at", "deleted"]
    ordering = ["seq"]

    def get_queryset(self, request):
        return _reported_or_not_dm(super().get_queryset(request))


class ReactionInline(ReadOnlyInline):
    model = Reaction
    show_change_link = False
    fields = readonly_fields = ["emoji", "user", "created_at"]
    ordering = ["pk"]


@admin.register(Message)
class MessageAdmin(ModeratorAdmin):
    list_display = ["id", "room", "seq", "author", "excerpt", "created_at", "edited_at", "deleted", "open_reports"]
    list_filter = [("room", admin.RelatedOnlyFieldListFilter), ("author", admin.RelatedOnlyFieldListFilter),
                   "deleted", ReportedFilter]
    search_fields = ["body", "author__username"]
    list_select_related = ["room", "author"]
    readonly_fields = ["room", "seq", "author", "body", "context_link", "html", "client_id", "created_at", "edited_at",
                       "deleted", "reply_to", "reply_count", "last_reply_at"]
    inlines = [ReplyInline, ReactionInline]
    actions = ["delete_messages", "restore_messages", "mute_authors", "ban_authors", "ban_authors_from_site"]

    def get_queryset(self, request):
        return _reported_or_not_dm(super().get_queryset(request)).annotate(
            _open_reports=Count("reports", filter=Q(reports__status=Report.Status.OPEN))
        )

    CONTEXT_EACH_SIDE = 10  # the context page shows this many messages before and after

    def get_urls(self):
        view = self.admin_site.admin_view(self.context_view)
        return [path("<int:message_id>/context/", view, name="chat_message_context"), *super().get_urls()]

    def context_view(self, request, message_id: int):
        """The message among the messages around it in its room, read-only: how staff see a
        reported message in context without being members of a private room. A DM shows only
        what is reported (the rule of get_queryset)."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        message = get_object_or_404(self.get_queryset(request).select_related("room", "author"), pk=message_id)
        around = _reported_or_not_dm(Message.objects.filter(room=message.room)).select_related("author")
        before = around.filter(seq__lt=message.seq).order_by("-seq")[: self.CONTEXT_EACH_SIDE]
        after = around.filter(seq__gt=message.seq).order_by("seq")[: self.CONTEXT_EACH_SIDE]
        context = {
            **self.admin_site.each_context(request),
            "title": f"Message #{message.pk} in {message.room.slug}, in context",
            "opts": self.model._meta,
            "message": message,
            "messages_around": [*reversed(before), message, *after],
            "room_url": None if message.room.private else reverse("room", args=[message.room.slug]) + f"?m={message.pk}",
        }
        return TemplateResponse(request, "chat/admin/message_context.html", context)

    @admin.display(description="in context")
    def context_link(self, message: Message) -> str:
        return format_html('<a href="{}">Read in context</a>', reverse("admin:chat_message_context", args=[message.pk]))

    @admin.display(description="body")
    def excerpt(self, message: Message) -> str:
        # Staff see what a deleted message said: they decide whether to restore it.
        return Truncator(message.body).chars(80)

    @admin.display(description="open reports", ordering="_open_reports")
    def open_reports(self, message: Message) -> int:
        return message._open_reports

    @admin.action(description="Delete the selected messages (members see them removed by a moderator)",
                  permissions=["moderate"])
    def delete_messages(self, request, queryset):
        self.run(request, queryset,
                 lambda m: services.message_delete(message_id=m.pk, user=request.user, door=rules.Door.ADMIN), done="Deleted")

    @admin.action(description="Restore the selected deleted messages", permissions=["moderate"])
    def restore_messages(self, request, queryset):
        self.run(request, queryset.filter(deleted=True),
                 lambda m: services.message_restore(message_id=m.pk, actor=request.user), done="Restored")

    @admin.action(description="Mute the authors in the message's room…", permissions=["moderate"])
    def mute_authors(self, request, queryset):
        targets = _room_targets((m.room, m.author) for m in queryset)
        return _restrict_step(self, request, queryset, title="Mute", targets=targets, apply=_mute(request))

    @admin.action(description="Ban the authors from the message's room…", permissions=["moderate"])
    def ban_authors(self, request, queryset):
        targets = _room_targets((m.room, m.author) for m in queryset)
        return _restrict_step(self, request, queryset, title="Ban from the room", targets=targets,
                              apply=_room_ban(request))

    @admin.action(description="Ban the authors from the site…", permissions=["moderate"])
    def ban_authors_from_site(self, request, queryset):
        users = _distinct_users(m.author for m in queryset)
        return _restrict_step(self, request, queryset, title="Ban from the site", targets=users,
                              apply=_site_ban(request))


# --- mutes and bans ---------------------------------------------------------------------


class InForceFilter(admin.SimpleListFilter):
    title = "in force"
    parameter_name = "in_force"

    def lookups(self, request, model_admin):
        return [("yes", "Yes"), ("no", "Expired")]

    def queryset(self, request, queryset):
        in_force = active_until_q(timezone.now())
        if self.value() == "yes":
            return queryset.filter(in_force)
        if self.value() == "no":
            return queryset.exclude(in_force)
        return queryset


class RestrictionAdmin(ModeratorAdmin):
    list_display = ["user", "room", "until", "in_force", "reason", "created_by", "created_at"]
    list_filter = [InForceFilter, ("room", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["user__username", "room__slug", "reason"]
    list_select_related = ["user", "room", "created_by"]
    actions = ["lift"]
    lift_service = None
    lift_done = ""

    @admin.display(boolean=True, description="in force")
    def in_force(self, restriction) -> bool:
        return restriction.in_force()

    def _lift(self, request, queryset):
        def call(restriction):
            access = rules.room_access(user=request.user, door=rules.Door.ADMIN, room=restriction.room)
            self.lift_service(access=access, actor=request.user, user=restriction.user)
        self.run(request, queryset, call, done=self.lift_done)


@admin.register(Mute)
class MuteAdmin(RestrictionAdmin):
    lift_service = staticmethod(services.mute_lift)
    lift_done = "Unmuted"

    @admin.action(description="Unmute the selected users", permissions=["moderate"])
    def lift(self, request, queryset):
        self._lift(request, queryset)


@admin.register(RoomBan)
class RoomBanAdmin(RestrictionAdmin):
    lift_service = staticmethod(services.room_ban_lift)
    lift_done = "Unbanned"

    @admin.action(description="Unban the selected users from the room", permissions=["moderate"])
    def lift(self, request, queryset):
        self._lift(request, queryset)


@admin.register(SiteBan)
class SiteBanAdmin(ModeratorAdmin):
    list_display = ["user", "until", "in_force", "reason", "created_by", "created_at"]
    list_filter = [InForceFilter]
    search_fields = ["user__username", "reason"]
    list_select_related = ["user", "created_by"]
    readonly_fields = ["user", "until", "reason", "created_by", "created_at"]
    actions = ["lift"]

    @admin.display(boolean=True, description="in force")
    def in_force(self, ban: SiteBan) -> bool:
        return ban.in_force()

    @admin.action(description="Lift the selected site bans", permissions=["moderate"])
    def lift(self, request, queryset):
        self.run(request, queryset, lambda ban: services.site_ban_lift(actor=request.user, user=ban.user),
                 done="Lifted")


# --- reports ----------------------------------------------------------------------------


class ReportStatusFilter(admin.SimpleListFilter):
    """Open reports unless asked otherwise: the queue is what needs doing."""

    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return [(None, "Open"), ("resolved", "Resolved"), ("all", "All")]

    def choices(self, changelist):
        for value, label in self.lookup_choices:
            yield {
                "selected": self.value() == value,
                "query_string": changelist.get_query_string({self.parameter_name: value}, [])
                if value else changelist.get_query_string(remove=[self.parameter_name]),
                "display": label,
            }

    def queryset(self, request, queryset):
        if self.value() is None:
            return queryset.filter(status=Report.Status.OPEN)
        if self.value() == "resolved":
            return queryset.exclude(status=Report.Status.OPEN)
        return queryset


@admin.register(Report)
class ReportAdmin(ModeratorAdmin):
    list_display = ["id", "created_at", "room", "author", "message_text", "in_context", "message_deleted", "reporter",
                    "reason", "status", "resolved_by"]
    list_filter = [ReportStatusFilter, ("message__room", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["reason", "message__body", "reporter__username", "message__author__username"]
    list_select_related = ["message__room", "message__author", "reporter", "resolved_by"]
    readonly_fields = ["message", "message_text", "in_context", "reporter", "reason", "status", "created_at",
                       "resolved_by", "resolved_at"]
    ordering = ["created_at", "id"]
    actions = ["hide_messages", "dismiss_reports", "ban_authors", "ban_authors_from_site"]

    @admin.display(description="room", ordering="message__room__slug")
    def room(self, report: Report):
        return report.message.room

    @admin.display(description="author", ordering="message__author__username")
    def author(self, report: Report):
        return report.message.author

    @admin.display(description="message")
    def message_text(self, report: Report) -> str:
        """The whole text as the reporter saw it (escaped; line breaks kept)."""
        return format_html('<div class="report-text" style="white-space: pre-wrap; max-width: 40em">{}</div>',
                           report.message.body)

    @admin.display(description="in context")
    def in_context(self, report: Report) -> str:
        """The message among those around it, in the admin (staff need not be members of a
        private room); for a public room also the room page opened at the message."""
        admin_url = reverse("admin:chat_message_context", args=[report.message_id])
        if report.message.room.private:
            return format_html('<a href="{}">Read in context</a>', admin_url)
        url = reverse("room", args=[report.message.room.slug]) + f"?m={report.message_id}"
        return format_html('<a href="{}">Read in context</a> · <a href="{}">Open in the room</a>', admin_url, url)

    @admin.display(boolean=True, description="deleted")
    def message_deleted(self, report: Report) -> bool:
        return report.message.deleted

    @admin.action(description="Resolve: hide the messages (a moderator's deletion)", permissions=["moderate"])
    def hide_messages(self, request, queryset):
        self.run(request, queryset, lambda r: services.report_resolve(report_id=r.pk, actor=request.user, hide=True),
                 done="Hidden")

    @admin.action(description="Resolve: dismiss the reports", permissions=["moderate"])
    def dismiss_reports(self, request, queryset):
        self.run(request, queryset, lambda r: services.report_resolve(report_id=r.pk, actor=request.user, hide=False),
                 done="Dismissed")

    @admin.action(description="Ban the authors from the message's room…", permissions=["moderate"])
    def ban_authors(self, request, queryset):
        targets = _room_targets((r.message.room, r.message.author) for r in queryset)
        return _restrict_step(self, request, queryset, title="Ban from the room", targets=targets,
                              apply=_room_ban(request))

    @admin.action(description="Ban the authors from the site…", permissions=["moderate"])
    def ban_authors_from_site(self, request, queryset):
        users = _distinct_users(r.message.author for r in queryset)
        return _restrict_step(self, request, queryset, title="Ban from the site", targets=users,
                              apply=_site_ban(request))


# --- the log ----------------------------------------------------------------------------


@admin.register(ModerationLog)
class ModerationLogAdmin(ModeratorAdmin):
    """Read-only: the log is append-only and written by the services."""

    list_display = ["created_at", "actor", "action", "summary", "reason"]
    list_filter = ["action"]
    search_fields = ["summary", "reason", "actor__username", "target_user__username"]
    list_select_related = ["actor"]
    date_hierarchy = "created_at"
    readonly_fields = ["created_at", "actor", "action", "target_user", "room", "message", "reason", "summary"]
    actions = None


# --- users: site bans for staff who manage users ------------------------------------------


admin.site.unregister(User)


@admin.register(User)
class ChatUserAdmin(UserAdmin):
    """Django's user admin, with site bans (saving a new password or unticking "active" also
    closes the user's sockets: chat.signals)."""

    actions = ["ban_from_site", "lift_site_ban"]
    list_display = [*UserAdmin.list_display, "is_active", "site_banned"]

    def has_moderate_permission(self, request) -> bool:
        return rules.is_site_moderator(request.user)

    def get_queryset(self, request):
        in_force = SiteBan.objects.filter(active_until_q(timezone.now()), user=OuterRef("pk"))
        return super().get_queryset(request).annotate(_site_banned=Exists(in_force))

    @admin.display(boolean=True, description="site ban", ordering="_site_banned")
    def site_banned(self, user) -> bool:
        return user._site_banned

    @admin.action(description="Ban the selected users from the site…", permissions=["moderate"])
    def ban_from_site(self, request, queryset):
        return _restrict_step(self, request, queryset, title="Ban from the site", targets=list(queryset),
                              apply=_site_ban(request))

    @admin.action(description="Lift the selected users' site bans", permissions=["moderate"])
    def lift_site_ban(self, request, queryset):
        _run(self, request, queryset, lambda u: services.site_ban_lift(actor=request.user, user=u), done="Lifted")


# --- bots and incoming webhooks (PROTOCOL.md 9) ---------------------------------------------

from .models import Bot, IncomingWebhook  # noqa: E402


@admin.register(Bot)
class BotAdmin(ModeratorAdmin):
    list_display = ["user", "owner", "webhook", "created_at", "ended_at"]
    list_filter = [("ended_at", admin.EmptyFieldListFilter)]
    search_fields = ["user__username", "owner__username"]
    list_select_related = ["user", "owner", "user__incoming_webhook"]
    readonly_fields = ["user", "owner", "created_at", "ended_at"]
    actions = ["end"]

    @admin.display(description="webhook")
    def webhook(self, bot: Bot) -> str:
        hook = getattr(bot.user, "incoming_webhook", None)
        return str(hook.name) if hook is not None else "—"

    @admin.action(description="End the selected bots (tokens stop working, sockets close)", permissions=["moderate"])
    def end(self, request, queryset):
        self.run(request, queryset.select_related("user"),
                 lambda bot: services.bot_end(actor=request.user, username=bot.user.username), done="Ended")


@admin.register(IncomingWebhook)
class IncomingWebhookAdmin(ModeratorAdmin):
    list_display = ["name", "room", "bot", "created_by", "created_at", "revoked_at"]
    list_filter = [("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["name", "room__slug", "bot__username"]
    list_select_related = ["room", "bot", "created_by"]
    readonly_fields = ["name", "room", "bot", "created_by", "created_at", "revoked_at"]
    exclude = ["secret_hash"]
    actions = ["revoke"]

    @admin.action(description="Revoke the selected webhooks", permissions=["moderate"])
    def revoke(self, request, queryset):
        self.run(request, queryset, lambda hook: services.webhook_revoke(
            webhook_id=hook.pk, actor=request.user, door=rules.Door.ADMIN), done="Revoked")
# --- outgoing webhooks (PROTOCOL.md 9) ------------------------------------------------------


@admin.register(Subscription)
class SubscriptionAdmin(ModeratorAdmin):
    """Read-only, with a link to its attempts; removed by an action calling the service (the
    secret is never shown)."""

    list_display = ["pk", "room", "url", "created_by", "created_at", "delivered_seq", "paused_at", "failing_since"]
    list_filter = [("paused_at", admin.EmptyFieldListFilter)]
    search_fields = ["url", "room__slug"]
    list_select_related = ["room", "created_by"]
    readonly_fields = ["room", "url", "created_by", "created_at", "delivered_seq", "paused_at", "failing_since",
                       "failures", "retry_at", "lease_until", "attempts"]
    fields = readonly_fields
    actions = ["remove"]

    @admin.display(description="Delivery attempts")
    def attempts(self, subscription):
        url = reverse("admin:chat_deliveryattempt_changelist") + f"?subscription__id__exact={subscription.pk}"
        return format_html('<a href="{}">{} attempts</a>', url, subscription.attempts.count())

    @admin.action(description="Remove the selected subscriptions", permissions=["moderate"])
    def remove(self, request, queryset):
        def call(subscription):
            access = rules.room_access(user=request.user, room_id=subscription.room_id, door=rules.Door.ADMIN)
            services.subscription_delete(access=access, actor=request.user, subscription_id=subscription.pk)

        self.run(request, queryset, call, done="Removed")


@admin.register(DeliveryAttempt)
class DeliveryAttemptAdmin(ModeratorAdmin):
    """Every delivery attempt of every subscription, read-only."""

    list_display = ["created_at", "subscription", "seq", "event_type", "ok", "status_code", "error", "duration_ms"]
    list_filter = ["ok", "event_type"]
    search_fields = ["subscription__url", "delivery_id"]
    list_select_related = ["subscription"]
    readonly_fields = ["subscription", "seq", "event_type", "delivery_id", "ok", "status_code", "error", "duration_ms",
                       "created_at"]
    actions = None
