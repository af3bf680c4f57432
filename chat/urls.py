from django.urls import path

from . import views

urlpatterns = [
    path("", views.home, name="home"),
    path("rooms/<slug:slug>/", views.room, name="room"),
    path("accounts/signup/", views.signup, name="signup"),
    path("settings/", views.settings_page, name="settings"),
    path("users/<str:username>/card/", views.user_card, name="user-card"),
    path("users/names/", views.user_names, name="user-names"),
    path("healthz", views.healthz, name="healthz"),
    path("favicon.ico", views.favicon, name="favicon"),
    path("notifications/unsubscribe/<str:token>/", views.unsubscribe, name="unsubscribe"),
]
