"""Cache keys: same request same key; anything that changes the answer changes the key; no secrets."""

from workbench.models.base import ChatRequest, Completion, GenerationOptions
from workbench.models.openai_compatible import OpenAICompatibleModel
from workbench.prompting.cache import ResponseCache, cache_key

MESSAGES = ({"role": "system", "content": "Label it."}, {"role": "user", "content": "Text: hi"})
REQUEST = ChatRequest(messages=MESSAGES, options=GenerationOptions(temperature=0.0, max_tokens=64))
IDENTITY = {"kind": "openai_compatible", "model": "m", "endpoint": "http://127.0.0.1:9/v1"}


def test_same_request_same_key():
    again = ChatRequest(messages=tuple(dict(m) for m in MESSAGES), options=GenerationOptions(temperature=0.0, max_tokens=64))
    assert cache_key(IDENTITY, REQUEST) == cache_key(dict(IDENTITY), again)


def test_anything_that_changes_the_answer_changes_the_key():
    base = cache_key(IDENTITY, REQUEST)
    variants = [
        cache_key({**IDENTITY, "model": "other"}, REQUEST),
        cache_key(IDENTITY, ChatRequest(MESSAGES, GenerationOptions(temperature=0.7, max_tokens=64))),
        cache_key(IDENTITY, ChatRequest(MESSAGES, GenerationOptions(temperature=0.0, max_tokens=65))),
        cache_key(IDENTITY, ChatRequest(MESSAGES, GenerationOptions(seed=1, max_tokens=64))),
        cache_key(IDENTITY, ChatRequest(MESSAGES[:1], REQUEST.options)),
        cache_key(IDENTITY, ChatRequest(MESSAGES, REQUEST.options, schema={"type": "object"})),
        cache_key(IDENTITY, REQUEST, sample=1),
    ]
    assert len({base, *variants}) == len(variants) + 1


def test_credentials_never_reach_the_key():
    with_key = OpenAICompatibleModel("m", base_url="http://user:s3cret@127.0.0.1:9/v1?key=abc", api_key="sk-SECRET-1")
    other_key = OpenAICompatibleModel("m", base_url="http://127.0.0.1:9/v1", api_key="sk-SECRET-2")
    assert cache_key(with_key.identity, REQUEST) == cache_key(other_key.identity, REQUEST)
    identity_text = repr(with_key.identity)
    for secret in ("s3cret", "sk-SECRET", "key=abc", "user"):
        assert secret not in identity_text


def test_stored_completions_survive_reopening(tmp_path):
    path = tmp_path / "cache.sqlite"
    completion = Completion(text='{"label": "x"}', tokens_in=10, tokens_out=3, finish_reason="stop", latency_s=0.25)
    key = cache_key(IDENTITY, REQUEST)
    with ResponseCache(path) as cache:
        assert cache.get(key) is None
        cache.put(key, IDENTITY, REQUEST, completion)
    with ResponseCache(path) as cache:
        assert cache.get(key) == completion
        assert cache.get_many([key, "missing"]) == {key: completion}
        assert len(cache) == 1


def test_database_contains_no_credentials(tmp_path):
    model = OpenAICompatibleModel("m", base_url="http://127.0.0.1:9/v1", api_key="sk-VERY-SECRET")
    path = tmp_path / "cache.sqlite"
    with ResponseCache(path) as cache:
        cache.put("k", model.identity, REQUEST, Completion("a", 1, 1, "stop", 0.1))
    assert b"sk-VERY-SECRET" not in path.read_bytes()


def test_put_many_stores_what_put_stores_in_one_transaction(tmp_path):
    answers = [(f"k{n}", REQUEST, Completion(f"answer {n}", 3, 2, "stop", 0.5)) for n in range(3)]
    with ResponseCache(tmp_path / "many.sqlite") as many, ResponseCache(tmp_path / "one.sqlite") as one:
        assert many.put_many(IDENTITY, answers) == 3
        for key, request, completion in answers:
            one.put(key, IDENTITY, request, completion)
        assert many.get_many(["k0", "k1", "k2"]) == one.get_many(["k0", "k1", "k2"])
        assert many.get("k2") == Completion("answer 2", 3, 2, "stop", 0.5)
        assert many.put_many(IDENTITY, []) == 0 and len(many) == 3
