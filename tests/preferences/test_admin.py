"""Admin screens of preferences: read-only lists of rows only actions write; the token is never shown."""

from __future__ import annotations

import pytest

from preferences import actions
from subscribers.actions import ConsentEvidence

pytestmark = pytest.mark.django_db


def test_read_only_lists_without_tokens(admin_client, make_subscriber):
    person = make_subscriber()
    prefs = actions.ensure_preferences(person)
    actions.set_frequency(person, frequency="weekly", evidence=ConsentEvidence(method="preference_center"))
    signup = actions.request_signup(email="wait@example.com", evidence=ConsentEvidence(method="form"))
    for url in ("/admin/preferences/subscriberpreferences/", "/admin/preferences/preferencechange/",
                "/admin/preferences/signup/", f"/admin/preferences/subscriberpreferences/{person.pk}/change/",
                f"/admin/preferences/signup/{signup.pk}/change/"):
        response = admin_client.get(url)
        assert response.status_code == 200, url
        assert prefs.token not in response.content.decode() and signup.token not in response.content.decode()
    assert admin_client.get("/admin/preferences/signup/add/").status_code == 403
    changes = admin_client.get("/admin/preferences/preferencechange/").content.decode()
    assert ">Preference center</td>" in changes and ">preference_center<" not in changes
