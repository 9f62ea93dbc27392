"""The LLM client against a fake OpenAI-compatible server on 127.0.0.1: deadlines, retries, typed errors, no leaks."""

import json
import logging

import httpx
import pytest

from posts.director.llm import LLMClient, LLMError, LLMRejected, LLMTimeout, LLMUnavailable
from tests.fakes.llm import FakeLLM

KEY = "sk-secret-0123456789abcdef"
ASK = [{"role": "user", "content": "Write the storyboard as JSON."}]


@pytest.fixture
def fake():
    with FakeLLM(api_key=KEY) as server:
        yield server


class Sleeps(list):
    """A sleep that records the delays instead of waiting them out."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps():
    return Sleeps()


@pytest.fixture
def client(fake, sleeps):
    with LLMClient(fake.url, "deepseek-chat", KEY, timeout=5, max_retries=3, sleep=sleeps) as llm:
        yield llm


def test_chat_returns_the_message_content(fake, client):
    fake.reply('{"shots": [{"kind": "a_roll"}]}')

    assert client.chat(ASK) == '{"shots": [{"kind": "a_roll"}]}'
    (request,) = fake.completions()
    assert request.json["model"] == "deepseek-chat"
    assert request.json["messages"] == ASK
    assert request.json["stream"] is False


def test_json_mode_sends_response_format_and_can_be_turned_off(fake, client):
    client.chat(ASK)
    client.chat([{"role": "user", "content": "Summarise this source."}], json_mode=False)

    with_json, plain = fake.completions()
    assert with_json.json["response_format"] == {"type": "json_object"}
    assert "response_format" not in plain.json


def test_the_key_travels_as_a_bearer_header(fake, client):
    client.chat(ASK)

    assert fake.completions()[0].headers["Authorization"] == f"Bearer {KEY}"


def test_a_wrong_key_is_rejected_without_retry_and_never_shown(fake, sleeps, caplog):
    wrong = "sk-wrong-9876543210fedcba"
    fake.reply_status(401, message=f"Incorrect API key provided: {wrong}. Find yours at platform.")
    caplog.set_level(logging.DEBUG)
    with LLMClient(fake.url, "deepseek-chat", wrong, sleep=sleeps) as llm, pytest.raises(LLMRejected) as caught:
        llm.chat(ASK)

    error = caught.value
    assert error.kind == "rejected"
    assert "LLM_API_KEY" in error.message
    assert len(fake.completions()) == 1 and sleeps == []
    for text in (str(error), repr(error), json.dumps(error.details), caplog.text, repr(llm)):
        assert wrong not in text


def test_the_key_never_appears_in_error_text_or_logs(fake, sleeps, caplog):
    fake.set_default("")
    for _ in range(4):
        fake.reply_status(500, message=f"upstream said {KEY}")
    caplog.set_level(logging.DEBUG)
    with LLMClient(fake.url, "deepseek-chat", KEY, max_retries=3, sleep=sleeps) as llm:
        with pytest.raises(LLMError) as caught:
            llm.chat(ASK)
        fake.reply_status(400, message=f"bad request from {KEY}")
        with pytest.raises(LLMRejected) as rejected:
            llm.chat(ASK)

    for error in (caught.value, rejected.value):
        for text in (str(error), repr(error), json.dumps(error.details)):
            assert KEY not in text
    assert "***" in rejected.value.message
    assert KEY not in caplog.text


def test_429_waits_as_long_as_retry_after_says(fake, client, sleeps):
    fake.reply_status(429, retry_after=2)
    fake.reply_status(429, retry_after=7)
    fake.reply('{"ok": 1}')

    assert client.chat(ASK) == '{"ok": 1}'
    assert sleeps == [2.0, 7.0]
    assert len(fake.completions()) == 3


def test_429_without_retry_after_backs_off_exponentially(fake, client, sleeps):
    fake.reply_status(429)
    fake.reply_status(429, retry_after="Wed, 21 Oct 2026 07:28:00 GMT")  # a date: our own backoff applies
    fake.reply_status(503)

    assert client.chat(ASK) == '{"ok": true}'
    assert sleeps == [1.0, 2.0, 4.0]


def test_a_retry_after_too_long_to_wait_fails_at_once(fake, client, sleeps):
    fake.reply_status(429, retry_after=3600)

    with pytest.raises(LLMUnavailable, match="wait 3600 s") as caught:
        client.chat(ASK)
    assert caught.value.kind == "unavailable"
    assert sleeps == []


def test_a_500_is_retried_then_succeeds(fake, client, sleeps):
    fake.reply_status(500)
    fake.reply_status(502, body="<html>Bad Gateway</html>")
    fake.reply('{"shots": []}')

    assert client.chat(ASK) == '{"shots": []}'
    assert sleeps == [1.0, 2.0]
    assert fake.pending() == 0


def test_500_forever_ends_unavailable_with_a_message_a_producer_can_act_on(fake, client, sleeps):
    for _ in range(4):
        fake.reply_status(503)

    with pytest.raises(LLMError) as caught:
        client.chat(ASK)

    assert caught.value.kind == "unavailable"
    assert str(caught.value) == "LLM unavailable: 503 after 3 retries."
    assert len(fake.completions()) == 4
    assert sleeps == [1.0, 2.0, 4.0]


@pytest.mark.parametrize("status", [400, 402, 404, 422])
def test_a_4xx_other_than_429_is_not_retried(fake, client, sleeps, status):
    fake.reply_status(status, message="Model Not Exist" if status == 404 else None)

    with pytest.raises(LLMRejected) as caught:
        client.chat(ASK)

    assert caught.value.kind == "rejected"
    assert f"({status})" in caught.value.message
    assert len(fake.completions()) == 1
    assert sleeps == []


def test_the_provider_refuses_json_mode_when_no_message_mentions_json(fake, client):
    with pytest.raises(LLMRejected, match="word 'json'"):
        client.chat([{"role": "user", "content": "Write a storyboard."}])


def test_a_slow_answer_times_out_without_retry(fake, sleeps):
    fake.reply_delay(3, '{"late": true}')
    with LLMClient(fake.url, "deepseek-chat", KEY, timeout=0.5, sleep=sleeps) as llm, pytest.raises(LLMError) as caught:
        llm.chat(ASK)

    assert caught.value.kind == "timeout"
    assert str(caught.value).startswith("Story generation timed out (0.5 s)")
    assert len(fake.completions()) == 1
    assert sleeps == []


def test_keep_alive_blank_lines_do_not_outlive_the_deadline(fake, sleeps):
    fake.reply_trickle(3, '{"late": true}')  # DeepSeek under load: 200 at once, then blank lines
    with LLMClient(fake.url, "deepseek-chat", KEY, timeout=0.5, sleep=sleeps) as llm, pytest.raises(LLMTimeout):
        llm.chat(ASK)


def test_keep_alive_blank_lines_before_the_body_are_fine(fake, client):
    fake.reply_trickle(0.3, '{"shots": []}')

    assert client.chat(ASK) == '{"shots": []}'


def test_a_dropped_connection_is_retried(fake, client, sleeps):
    fake.reply_drop()

    assert client.chat(ASK) == '{"ok": true}'
    assert sleeps == [1.0]
    assert len(fake.completions()) == 2


def test_an_unreachable_server_ends_unavailable_naming_the_host(sleeps):
    with FakeLLM() as gone:
        url = gone.url
    with (
        LLMClient(url, "deepseek-chat", KEY, max_retries=2, sleep=sleeps) as llm,
        pytest.raises(LLMUnavailable) as caught,
    ):
        llm.chat(ASK)

    assert "cannot reach 127.0.0.1:" in caught.value.message
    assert caught.value.message.endswith("after 2 retries.")
    assert sleeps == [1.0, 2.0]


def test_an_answer_without_content_is_rejected(fake, client):
    fake.reply(None, finish_reason="content_filter")

    with pytest.raises(LLMRejected, match="finish_reason=content_filter"):
        client.chat(ASK)


def test_from_settings_reads_the_llm_settings_and_is_built_once(fake, settings):
    settings.LLM_BASE_URL, settings.LLM_MODEL, settings.LLM_API_KEY, settings.LLM_TIMEOUT = fake.url, "m-1", KEY, 7

    llm = LLMClient.from_settings()

    assert (llm.base_url, llm.model, llm.timeout) == (fake.url, "m-1", 7.0)
    assert LLMClient.from_settings() is llm
    assert llm.chat(ASK) == '{"ok": true}'
    assert fake.completions()[0].json["model"] == "m-1"


# --- the fake itself ---------------------------------------------------------------------------


def test_fake_answers_in_the_openai_shape_and_logs_each_request(fake):
    body = {"model": "deepseek-chat", "messages": ASK, "response_format": {"type": "json_object"}}
    response = httpx.post(f"{fake.url}/chat/completions", json=body, headers={"Authorization": f"Bearer {KEY}"})

    data = response.json()
    assert response.status_code == 200
    assert data["id"].startswith("chatcmpl-")
    assert data["object"] == "chat.completion"
    assert isinstance(data["created"], int)
    assert data["model"] == "deepseek-chat"
    assert data["choices"][0]["message"] == {"role": "assistant", "content": '{"ok": true}'}
    assert data["choices"][0]["finish_reason"] == "stop"
    usage = data["usage"]
    assert {"prompt_tokens", "completion_tokens", "total_tokens"} <= set(usage)
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] and usage["prompt_tokens"] > 0
    (request,) = fake.requests()
    assert request.json == body
    assert request.headers["Authorization"] == f"Bearer {KEY}"
    assert "storyboard" in request.prompt_text


def test_fake_refuses_a_missing_key_in_the_openai_error_shape(fake):
    fake.reply("never sent")
    response = httpx.post(f"{fake.url}/chat/completions", json={"model": "x", "messages": ASK})

    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"
    assert fake.pending() == 1  # the scripted reply is kept for the next authorised request
    assert len(fake.requests()) == 1


def test_fake_without_a_key_configured_accepts_any_request():
    with FakeLLM(api_key=None, default_reply="hello") as fake:
        response = httpx.post(f"{fake.url}/chat/completions", json={"model": "x", "messages": ASK})
    assert response.json()["choices"][0]["message"]["content"] == "hello"
