"""The embedded broker (filesystem://) never shows a worker a message that is still being written."""

from queue import Empty

import pytest
from kombu import Connection

import marketing.celery  # noqa: F401  (points filesystem:// at marketing.broker)
from marketing import broker


@pytest.fixture
def channel(tmp_path):
    folder = tmp_path / "queue"
    folder.mkdir()
    options = {"data_folder_in": str(folder), "data_folder_out": str(folder), "store_processed": False}
    with Connection("filesystem://", transport_options=options) as connection:
        channel = connection.channel()
        yield channel
        channel.close()


def test_the_filesystem_url_uses_the_atomic_transport(channel):
    assert isinstance(channel, broker.Channel)


def test_a_message_appears_only_when_it_is_whole(channel, monkeypatch):
    payload = {"body": "x" * 200_000, "headers": {"task": "campaigns.sending.tasks.dispatch_campaigns_task"}}
    replace = broker.os.replace
    seen_before_rename = []

    def look_then_replace(source, target):
        # The file is written in full at this point, under a name the reader skips.
        assert broker.os.path.getsize(source) > 200_000
        seen_before_rename.append(channel._size("celery"))
        with pytest.raises(Empty):
            channel._get("celery")
        replace(source, target)

    monkeypatch.setattr(broker.os, "replace", look_then_replace)
    channel._put("celery", payload)
    assert seen_before_rename == [0]
    assert channel._size("celery") == 1
    assert channel._get("celery") == payload
    assert channel._size("celery") == 0
    assert not list(broker.os.scandir(channel.data_folder_in))  # no partial file left behind
