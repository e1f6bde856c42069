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
    # Segment-compatible tracking API (subscribers/views.py)
    path("", include("subscribers.urls")),
]
if settings.DEBUG:
    urlpatterns += static(settings.MEDIA_URL, document_root=settings.MEDIA_ROOT)
