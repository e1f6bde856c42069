"""Route the public pages: preference center, unsubscribe, signup and its confirmation."""

from django.urls import path

from preferences import views

app_name = "preferences"
urlpatterns = [
    path("preferences/erased/", views.erased, name="erased"),
    path("preferences/<str:token>/", views.preference_center, name="center"),
    path("preferences/<str:token>/export/", views.export_data, name="export"),
    path("preferences/<str:token>/erase/", views.erase_data, name="erase"),
    path("unsubscribe/<str:token>/", views.unsubscribe, name="unsubscribe"),
    path("unsubscribe/<str:token>/confirm/", views.unsubscribe_confirm, name="unsubscribe_confirm"),
    path("unsubscribe/<str:token>/done/", views.unsubscribed, name="unsubscribed"),
    path("unsubscribe/<str:token>/undo/", views.resubscribe, name="resubscribe"),
    path("signup/", views.signup, name="signup"),
    path("signup/sent/", views.signup_sent, name="signup_sent"),
    path("signup/api/", views.signup_api, name="signup_api"),
    path("signup/confirm/<str:token>/", views.signup_confirm, name="signup_confirm"),
]
