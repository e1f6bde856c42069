from django.urls import path

from subscribers import views

app_name = "tracking"

urlpatterns = [
    path("v1/identify", views.identify, name="identify"),
    path("v1/track", views.track, name="track"),
    path("v1/page", views.page, name="page"),
    path("v1/screen", views.screen, name="screen"),
    path("v1/group", views.group, name="group"),
    path("v1/alias", views.alias, name="alias"),
    path("v1/batch", views.batch, name="batch"),
    path("v1/import", views.batch, name="import"),
]
