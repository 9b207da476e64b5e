"""The OAuth JWT token exchange (reference §7) over real HTTP, plus cozepy's JWT flow against it."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cozepy import Coze, CozeAPIError, JWTAuth, JWTOAuthApp
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from typer.testing import CliRunner

from ability_gateway.cli import app as cli_app
from ability_gateway.simulator.app import SimulatorConfig

from .conftest import SAMPLE_LANDSCAPE, TOKEN, WF_PROMPT, Simulator, run_simulator

GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
APP_ID = "1127900106117"
KID = "gdehvaDegW_simulator_key_1"
APP2_ID = "1127900106118"
KID2 = "gdehvaDegW_simulator_key_2"
ACCESS_TOKEN = re.compile(r"^czs_[A-Za-z0-9]{64}$")
TOKEN_PATH = "/api/permission/oauth2/token"


def _rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _public_pem(key: rsa.RSAPrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def _private_pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


@dataclass(frozen=True)
class Keys:
    app: rsa.RSAPrivateKey
    """The registered key of APP_ID (kid KID)."""
    app2: rsa.RSAPrivateKey
    """The registered key of APP2_ID (kid KID2)."""
    stranger: rsa.RSAPrivateKey
    """Registered nowhere."""


@pytest.fixture(scope="module")
def keys() -> Keys:
    return Keys(app=_rsa_key(), app2=_rsa_key(), stranger=_rsa_key())


@pytest.fixture(scope="module")
def oauth_sim(tmp_path_factory: pytest.TempPathFactory, keys: Keys) -> Iterator[Simulator]:
    """A simulator with two OAuth apps registered (the option is repeatable)."""
    folder = tmp_path_factory.mktemp("oauth")
    (folder / "app.pem").write_text(_public_pem(keys.app))
    (folder / "app2.pem").write_text(_public_pem(keys.app2))
    with run_simulator(
        "--oauth-app",
        f"{APP_ID}:{KID}:{folder / 'app.pem'}",
        "--oauth-app",
        f"{APP2_ID}:{KID2}:{folder / 'app2.pem'}",
    ) as simulator:
        yield simulator


def sign(
    key: Any,
    *,
    kid: str = KID,
    alg: str = "RS256",
    drop: tuple[str, ...] = (),
    **claims: Any,
) -> str:
    """A JWT as the doc's sample signs one, with claims overridden or dropped."""
    now = int(time.time())
    payload: dict[str, Any] = {
        "iss": APP_ID,
        "aud": "api.coze.cn",
        "iat": now,
        "exp": now + 600,
        "jti": uuid.uuid4().hex,
    }
    payload.update(claims)
    for name in drop:
        del payload[name]
    return jwt.encode(payload, key, algorithm=alg, headers={"kid": kid})


def exchange(
    simulator: Simulator,
    token: str | None,
    body: Any = None,
    *,
    path: str = TOKEN_PATH,
    authorization: str | None = None,
) -> httpx.Response:
    headers = {}
    if authorization is not None:
        headers["Authorization"] = authorization
    elif token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if body is None:
        body = {"grant_type": GRANT, "duration_seconds": 900}
    return httpx.post(simulator.url + path, headers=headers, json=body, timeout=10)


def access_token(simulator: Simulator, key: Any, duration: int | None = None, **claims: Any) -> str:
    body: dict[str, Any] = {"grant_type": GRANT}
    if duration is not None:
        body["duration_seconds"] = duration
    response = exchange(simulator, sign(key, **claims), body)
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


def run_prompt(simulator: Simulator, bearer: str) -> dict[str, Any]:
    response = httpx.post(
        simulator.url + "/v1/workflow/run",
        headers={"Authorization": f"Bearer {bearer}"},
        json={
            "workflow_id": WF_PROMPT,
            "parameters": {"url": simulator.file_url(SAMPLE_LANDSCAPE), "shuru": "电商主图"},
        },
        timeout=30,
    )
    assert response.status_code == 200
    payload: dict[str, Any] = response.json()
    return payload


def history(simulator: Simulator, bearer: str, execute_id: str) -> dict[str, Any]:
    response = httpx.get(
        f"{simulator.url}/v1/workflows/{WF_PROMPT}/run_histories/{execute_id}",
        headers={"Authorization": f"Bearer {bearer}"},
        timeout=10,
    )
    assert response.status_code == 200
    payload: dict[str, Any] = response.json()
    return payload


def own_host(simulator: Simulator) -> str:
    return simulator.url.removeprefix("http://")


def assert_refused(response: httpx.Response, status: int, error_code: str) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["X-Tt-Logid"]
    body = response.json()
    assert set(body) == {"error_code", "error_message"}
    assert body["error_code"] == error_code
    message: str = body["error_message"]
    return message


# --------------------------------------------------------------------------------------------
# The exchange and the issued token.


def test_exchange_issues_a_czs_token_that_runs_workflows(oauth_sim: Simulator, keys: Keys) -> None:
    before = time.time()
    response = exchange(oauth_sim, sign(keys.app), {"grant_type": GRANT})  # default duration
    assert response.status_code == 200, response.text
    assert response.headers["X-Tt-Logid"]
    body = response.json()
    assert set(body) == {"access_token", "expires_in"}
    assert ACCESS_TOKEN.match(body["access_token"])
    # expires_in is an absolute unix timestamp, ~now + 900 (at least 900 s away).
    assert before + 900 <= body["expires_in"] <= time.time() + 901

    run = run_prompt(oauth_sim, body["access_token"])
    assert run["code"] == 0, run
    assert run["data"]
    record = history(oauth_sim, body["access_token"], run["execute_id"])
    assert record["code"] == 0
    assert re.fullmatch(r"\d{16}", record["data"][0]["connector_uid"])
    # The --token values keep working beside issued tokens.
    assert run_prompt(oauth_sim, TOKEN)["code"] == 0


def test_each_exchange_issues_a_new_token(oauth_sim: Simulator, keys: Keys) -> None:
    first, second = access_token(oauth_sim, keys.app), access_token(oauth_sim, keys.app)
    assert first != second
    assert run_prompt(oauth_sim, first)["code"] == 0
    assert run_prompt(oauth_sim, second)["code"] == 0


@pytest.mark.parametrize("aud", ["api.coze.cn", "api.coze.com", "own"])
def test_audiences_accepted(oauth_sim: Simulator, keys: Keys, aud: str) -> None:
    aud = own_host(oauth_sim) if aud == "own" else aud
    response = exchange(oauth_sim, sign(keys.app, aud=aud))
    assert response.status_code == 200, response.text


def test_longest_duration(oauth_sim: Simulator, keys: Keys) -> None:
    before = time.time()
    response = exchange(oauth_sim, sign(keys.app), {"grant_type": GRANT, "duration_seconds": 86399})
    assert response.status_code == 200, response.text
    assert before + 86399 <= response.json()["expires_in"] <= time.time() + 86400


def test_second_app_and_optional_claims(oauth_sim: Simulator, keys: Keys) -> None:
    token = access_token(
        oauth_sim,
        keys.app2,
        kid=KID2,
        iss=APP2_ID,
        session_name="user_2222",
        session_context={"device_info": {"device_id": "1234567890"}},
    )
    assert run_prompt(oauth_sim, token)["code"] == 0


def test_enterprise_account_path(oauth_sim: Simulator, keys: Keys) -> None:
    path = "/api/permission/oauth2/account/7351234567890123456/token"
    response = exchange(oauth_sim, sign(keys.app), path=path)
    assert response.status_code == 200, response.text
    assert run_prompt(oauth_sim, response.json()["access_token"])["code"] == 0


def test_short_lived_token_expires_with_4100(oauth_sim: Simulator, keys: Keys) -> None:
    response = exchange(oauth_sim, sign(keys.app), {"grant_type": GRANT, "duration_seconds": 1})
    assert response.status_code == 200, response.text
    token, expires_in = response.json()["access_token"], response.json()["expires_in"]
    run = run_prompt(oauth_sim, token)
    assert run["code"] == 0, run

    time.sleep(max(0.0, expires_in - time.time()) + 0.05)
    expired = run_prompt(oauth_sim, token)
    assert (expired["code"], expired["msg"]) == (4100, "authentication is invalid")
    assert history(oauth_sim, token, run["execute_id"])["code"] == 4100
    # The pat still reads the same record.
    assert history(oauth_sim, TOKEN, run["execute_id"])["code"] == 0


def test_unknown_czs_token_is_4100(oauth_sim: Simulator) -> None:
    assert run_prompt(oauth_sim, "czs_" + "A" * 64)["code"] == 4100


# --------------------------------------------------------------------------------------------
# Refusals.


def test_reused_jti_is_refused(oauth_sim: Simulator, keys: Keys) -> None:
    token = sign(keys.app)
    assert exchange(oauth_sim, token).status_code == 200
    message = assert_refused(exchange(oauth_sim, token), 401, "invalid_client")
    assert "jti" in message
    # A freshly signed JWT that repeats the jti is refused too.
    jti = jwt.decode(token, options={"verify_signature": False})["jti"]
    again = sign(keys.app, jti=jti, iat=int(time.time()) - 1)
    assert again != token
    assert_refused(exchange(oauth_sim, again), 401, "invalid_client")


JwtCase = Callable[[Keys, Simulator], str | None]

_BAD_JWTS: dict[str, JwtCase] = {
    "unknown kid": lambda k, s: sign(k.app, kid="no-such-kid"),
    "iss of another app": lambda k, s: sign(k.app, iss=APP2_ID),
    "unknown iss": lambda k, s: sign(k.app, iss="999"),
    "wrong aud": lambda k, s: sign(k.app, aud="api.example.com"),
    "aud of another port": lambda k, s: sign(k.app, aud="127.0.0.1:1"),
    "aud as a list": lambda k, s: sign(k.app, aud=["api.coze.cn"]),
    "alg HS256": lambda k, s: sign(b"k" * 32, alg="HS256"),
    "alg RS512 with the right key": lambda k, s: sign(k.app, alg="RS512"),
    "alg none": lambda k, s: sign(None, alg="none"),
    "signed by another key": lambda k, s: sign(k.stranger),
    "signed by the other app's key": lambda k, s: sign(k.app2),
    "expired": lambda k, s: sign(k.app, iat=int(time.time()) - 120, exp=int(time.time()) - 1),
    "iat in the future": lambda k, s: sign(k.app, iat=int(time.time()) + 60),
    "iat not an integer": lambda k, s: sign(k.app, iat=str(int(time.time()))),
    "no jti": lambda k, s: sign(k.app, drop=("jti",)),
    "empty jti": lambda k, s: sign(k.app, jti=""),
    "no exp": lambda k, s: sign(k.app, drop=("exp",)),
    "no iat": lambda k, s: sign(k.app, drop=("iat",)),
    "no aud": lambda k, s: sign(k.app, drop=("aud",)),
    "no iss": lambda k, s: sign(k.app, drop=("iss",)),
    "not a JWT": lambda k, s: "not-a-jwt",
    "no Authorization header": lambda k, s: None,
}


@pytest.mark.parametrize("case", list(_BAD_JWTS))
def test_bad_jwt_is_invalid_client(oauth_sim: Simulator, keys: Keys, case: str) -> None:
    message = assert_refused(
        exchange(oauth_sim, _BAD_JWTS[case](keys, oauth_sim)), 401, "invalid_client"
    )
    assert message.startswith("invalid jwt: ")
    if case == "unknown kid":
        assert message == "invalid jwt: kid not been registred"  # the cloud's wording


def test_non_bearer_authorization_is_invalid_client(oauth_sim: Simulator, keys: Keys) -> None:
    response = exchange(oauth_sim, None, authorization=f"Basic {sign(keys.app)}")
    assert_refused(response, 401, "invalid_client")


@pytest.mark.parametrize("grant_type", ["client_credentials", "refresh_token"])
def test_other_grant_type_is_unsupported(oauth_sim: Simulator, keys: Keys, grant_type: str) -> None:
    response = exchange(oauth_sim, sign(keys.app), {"grant_type": grant_type})
    message = assert_refused(response, 400, "unsupported_grant_type")
    assert message == f"not supported grant type: {grant_type}"


@pytest.mark.parametrize("body", [{}, {"grant_type": ""}, {"grant_type": 1}, []])
def test_missing_grant_type_is_invalid_request(oauth_sim: Simulator, keys: Keys, body: Any) -> None:
    message = assert_refused(exchange(oauth_sim, sign(keys.app), body), 400, "invalid_request")
    assert message in ("invalid request: grant_type", "invalid request: body")


def test_body_not_json_is_invalid_request(oauth_sim: Simulator, keys: Keys) -> None:
    response = httpx.post(
        oauth_sim.url + TOKEN_PATH,
        headers={"Authorization": f"Bearer {sign(keys.app)}", "Content-Type": "application/json"},
        content=b"{not json",
    )
    assert assert_refused(response, 400, "invalid_request") == "invalid request: body"


@pytest.mark.parametrize("duration", [86400, 0, -1, "900", 900.5, True])
def test_bad_duration_is_invalid_request(oauth_sim: Simulator, keys: Keys, duration: Any) -> None:
    response = exchange(
        oauth_sim, sign(keys.app), {"grant_type": GRANT, "duration_seconds": duration}
    )
    assert assert_refused(response, 400, "invalid_request") == "invalid request: duration_seconds"


def test_refused_request_does_not_spend_the_jwt(oauth_sim: Simulator, keys: Keys) -> None:
    token = sign(keys.app)
    refused = exchange(oauth_sim, token, {"grant_type": GRANT, "duration_seconds": 86400})
    assert refused.status_code == 400
    assert exchange(oauth_sim, token).status_code == 200


# --------------------------------------------------------------------------------------------
# cozepy 0.20.0 as the reference client (authlib-signed JWT, aud = the base URL's netloc).


def test_cozepy_jwt_auth_runs_a_workflow(oauth_sim: Simulator, keys: Keys) -> None:
    auth = JWTAuth(
        client_id=APP_ID,
        private_key=_private_pem(keys.app),
        public_key_id=KID,
        ttl=900,
        base_url=oauth_sim.url,
    )
    coze = Coze(auth=auth, base_url=oauth_sim.url)
    result = coze.workflows.runs.create(
        workflow_id=WF_PROMPT,
        parameters={"url": oauth_sim.file_url(SAMPLE_LANDSCAPE), "shuru": "电商主图"},
    )
    assert result.data
    assert ACCESS_TOKEN.match(auth.token)


def test_cozepy_sees_the_error_message(oauth_sim: Simulator, keys: Keys) -> None:
    oauth = JWTOAuthApp(
        client_id=APP_ID,
        private_key=_private_pem(keys.app),
        public_key_id="no-such-kid",
        base_url=oauth_sim.url,
    )
    with pytest.raises(CozeAPIError) as caught:
        oauth.get_access_token(ttl=900)
    assert caught.value.msg == "invalid jwt: kid not been registred"


# --------------------------------------------------------------------------------------------
# Configuration.


def test_config_rejects_bad_keys_and_duplicate_kids(keys: Keys) -> None:
    pem = _public_pem(keys.app)
    SimulatorConfig(oauth_apps=((APP_ID, KID, pem),))
    with pytest.raises(ValueError, match="registered twice"):
        SimulatorConfig(oauth_apps=((APP_ID, KID, pem), (APP2_ID, KID, pem)))
    with pytest.raises(ValueError, match="PEM"):
        SimulatorConfig(oauth_apps=((APP_ID, KID, "not a pem"),))
    with pytest.raises(ValueError, match="non-empty"):
        SimulatorConfig(oauth_apps=(("", KID, pem),))


def test_cli_rejects_bad_oauth_app_option(tmp_path: Path) -> None:
    ec_pem = tmp_path / "ec.pem"
    ec_pem.write_bytes(
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    runner = CliRunner(env={"COLUMNS": "400"})  # keep rich from wrapping the message
    for value, expected in [
        ("no-colons", "APP_ID:KID:PATH_TO_PUBLIC_KEY_PEM"),
        (f"{APP_ID}:{KID}:{tmp_path / 'missing.pem'}", "cannot read"),
        (f"{APP_ID}:{KID}:{ec_pem}", "not an RSA public key"),
    ]:
        result = runner.invoke(cli_app, ["coze-sim", "--oauth-app", value])
        assert result.exit_code == 2, result.output
        assert expected in result.output
