"""What a test does when ``../shared/data`` (or Chromium) is missing: skip with the reason, fail under CI."""

import pytest

from tests import shared_data


def test_missing_data_skips_with_reason(monkeypatch, tmp_path):
    monkeypatch.setattr(shared_data, "SHARED_DATA", tmp_path / "nowhere")
    for value in ("", "false", "0"):
        monkeypatch.setenv("CI", value)
        with pytest.raises(BaseException, match=r"nowhere/photos missing: these tests read ../shared/data") as e:
            shared_data.shared("photos")
        assert e.type is pytest.skip.Exception, e.type


def test_missing_data_fails_under_ci(monkeypatch, tmp_path):
    monkeypatch.setattr(shared_data, "SHARED_DATA", tmp_path / "nowhere")
    for value in ("true", "TRUE", "1"):
        monkeypatch.setenv("CI", value)
        with pytest.raises(BaseException, match=r"nowhere/photos missing.*CI=true") as e:  # a skip would hide it
            shared_data.shared("photos")
        assert e.type is pytest.fail.Exception, e.type


def test_present_data_is_returned(monkeypatch, tmp_path):
    (tmp_path / "photos").mkdir()
    monkeypatch.setattr(shared_data, "SHARED_DATA", tmp_path)
    monkeypatch.setenv("CI", "true")
    assert shared_data.shared("photos") == tmp_path / "photos"
