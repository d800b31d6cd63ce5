"""Sessions with the same API key share one google-genai client; other keys never do."""

from services.gemini_client import ClientPool, UpstreamTarget

TARGET = UpstreamTarget("custom", "https://upstream.invalid")


async def test_sessions_with_one_key_share_a_client_and_other_keys_get_their_own():
    pool = ClientPool(TARGET, keep="server-key")
    first, second = pool.acquire("server-key"), pool.acquire("server-key")
    browser = pool.acquire("browser-key")
    assert first is second
    assert browser is not first
    await pool.close()


async def test_a_browser_keys_client_is_closed_with_its_last_session_and_the_next_gets_a_new_one():
    pool = ClientPool(TARGET, keep="server-key")
    one, two = pool.acquire("browser-key"), pool.acquire("browser-key")
    await pool.release("browser-key")
    assert pool.acquire("browser-key") is one  # still in use by the other session
    await pool.release("browser-key")
    await pool.release("browser-key")
    assert pool.acquire("browser-key") is not two
    await pool.close()


async def test_the_servers_own_client_outlives_its_sessions_until_shutdown():
    pool = ClientPool(TARGET, keep="server-key")
    client = pool.acquire("server-key")
    await pool.release("server-key")
    assert pool.acquire("server-key") is client
    await pool.close()
    assert pool.acquire("server-key") is not client
    await pool.close()


async def test_the_servers_own_client_is_built_with_the_pool_not_in_the_first_session(monkeypatch):
    built: list[str] = []
    original = UpstreamTarget.client

    def counting(self, api_key, ctx=None):
        built.append(api_key)
        return original(self, api_key, ctx)

    monkeypatch.setattr(UpstreamTarget, "client", counting)
    pool = ClientPool(TARGET, keep="server-key")
    assert built == ["server-key"]
    pool.acquire("server-key")
    await pool.release("server-key")
    pool.acquire("server-key")
    assert built == ["server-key"]
    await pool.close()
