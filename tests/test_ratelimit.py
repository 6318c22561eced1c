"""Submission rate limits hold across processes (a token bucket in Redis)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from core import SubmissionRateLimited


@pytest.fixture
def acme_app(make_app, acme_site):
    import acme_rules

    return make_app(plugins=[acme_rules])


def test_over_the_limit_the_caller_gets_a_clear_error(acme_app):
    notify = acme_app.tasks["acme_rules.notify"]
    for _ in range(3):
        notify.delay(user_id=7)
    with pytest.raises(
        SubmissionRateLimited,
        match=r"more than 3 submissions per minute for "
        r"user_id=7; try again in \d+s",
    ):
        notify.delay(user_id=7)
    notify.delay(user_id=8)  # another user has a bucket of its own
    broker = acme_app.redis_client()
    assert broker.llen("acme-fast") == 4  # the refused one was never sent


def test_the_limit_is_shared_with_other_processes(acme_app, acme_site, bt_env):
    notify = acme_app.tasks["acme_rules.notify"]
    notify.delay(user_id=1)
    notify.delay(user_id=1)
    script = textwrap.dedent("""
        import acme_rules
        from core import create_app
        from core.settings import load_settings
        app = create_app(load_settings(), plugins=[acme_rules])
        app.tasks["acme_rules.notify"].delay(user_id=1)
        try:
            app.tasks["acme_rules.notify"].delay(user_id=1)
        except Exception as exc:
            print(type(exc).__name__)
    """)
    import os

    env = {**os.environ, "PYTHONPATH": f"{acme_site}:{os.getcwd()}"}
    env["REDIS_URL"] = acme_app.conf.broker_url  # the same broker, from another process
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.stdout.strip() == "SubmissionRateLimited", out.stderr


def test_limit_from_plugin_settings_and_zero_switches_it_off(make_app, acme_site, monkeypatch):
    import acme_rules

    monkeypatch.setenv("ACME_RULES_SUBMIT_LIMIT_PER_MINUTE", "0")
    app = make_app(plugins=[acme_rules])
    for _ in range(10):
        app.tasks["acme_rules.notify"].delay(user_id=3)
    monkeypatch.setenv("ACME_RULES_SUBMIT_LIMIT_PER_MINUTE", "1")
    app = make_app(plugins=[acme_rules])
    app.tasks["acme_rules.notify"].delay(user_id=4)
    with pytest.raises(SubmissionRateLimited):
        app.tasks["acme_rules.notify"].delay(user_id=4)
