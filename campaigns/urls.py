"""Route our own tracking: the open pixel and the click redirect."""

from django.urls import path

from campaigns import views

app_name = "campaigns"
urlpatterns = [
    path("t/o/<str:token>.gif", views.open_pixel, name="open_pixel"),
    path("t/c/<str:token>", views.click_redirect, name="click_redirect"),
]
