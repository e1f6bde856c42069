"""Route the admin, the public pages and the ESP webhooks."""

from django.conf import settings
from django.conf.urls.static import static
from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

admin.site.site_header = "Marketing"
admin.site.site_title = "Marketing admin"
admin.site.index_title = "Audience, campaigns and journeys"

urlpatterns = [
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    path("admin/", admin.site.urls),
    # ESP tracking webhooks, /anymail/<esp>/tracking/ (campaigns/webhooks.py; docs/tracking.md)
    path("anymail/", include("campaigns.webhooks")),
    # Own open pixel and click redirect, /t/o/... and /t/c/... (campaigns/views.py)
    path("", include("campaigns.urls")),
    # Segment-compatible tracking API (subscribers/views.py)
    path("", include("subscribers.urls")),
    # Public pages: preference center, unsubscribe (RFC 8058), signup (preferences/views.py)
    path("", include("preferences.urls")),
]
if settings.DEBUG:
    urlpatterns += static(settings.MEDIA_URL, document_root=settings.MEDIA_ROOT)
