"""deploy/: the compose file and nginx.conf cannot run here (no Docker engine), so they are checked by
parsing: `docker compose config` when the compose plugin exists, otherwise a YAML load and the
rules every service must meet; nginx.conf by the directives the cluster depends on."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import yaml

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
COMPOSE = DEPLOY / "docker-compose.yml"
NGINX = DEPLOY / "nginx.conf"
# Settings a node of ours needs in the distributed mode (docs/configuration.md, "Modes").
APP_SETTINGS = {"DATABASE_URL", "REDIS_URL", "S3_BUCKET", "S3_ENDPOINT_URL", "SECRET_KEY", "AUDIT_HASH_KEY", "TRUSTED_PROXIES"}
SECRET_NAME = re.compile(r"SECRET|PASSWORD|_KEY$|_KEY_ID$")


def _services() -> dict:
    return yaml.safe_load(COMPOSE.read_text())["services"]


def _runs_our_code(service: dict) -> bool:
    return "build" in service


def test_every_service_has_an_image_or_a_build():
    for name, service in _services().items():
        assert service.get("image") or service.get("build"), name


def _asgi_nodes(server: str) -> set[str]:
    """Compose services that run homepocket.server under `server` (ASGI_SERVER, granian by default)."""
    return {
        name
        for name, s in _services().items()
        if "homepocket.server" in " ".join(s.get("command", [])) and (s.get("environment") or {}).get("ASGI_SERVER", "granian") == server
    }


def test_each_of_our_services_has_a_command():
    ours = {name: s for name, s in _services().items() if _runs_our_code(s)}
    assert {"web1", "web2", "ws", "signer1", "signer2", "worker", "beat", "migrate"} <= set(ours)
    for name, service in ours.items():
        assert service.get("command"), name


def test_the_cluster_has_every_part():
    services = _services()
    images = {name: service.get("image", "") for name, service in services.items()}
    assert images["postgres"].startswith("postgres:")
    assert images["redis"].startswith("redis:")
    assert images["s3"].startswith("minio/")
    assert images["nginx"].startswith("nginx:")
    commands = {name: " ".join(service.get("command", [])) for name, service in services.items()}
    assert "worker" in commands["worker"] and "beat" in commands["beat"]
    assert sum(1 for c in commands.values() if "homepocket.server" in c) >= 2
    assert sum(1 for c in commands.values() if "-m signer" in c) >= 2


def test_every_node_gets_the_distributed_settings_and_its_signer_socket():
    for name, service in _services().items():
        if not _runs_our_code(service) or "signer" in name:
            continue
        assert service.get("env_file") == ".env", name
        assert APP_SETTINGS <= set(service["environment"]), (name, APP_SETTINGS - set(service["environment"]))
    services = _services()
    for web, signer in (("web1", "signer1"), ("web2", "signer2")):
        socket = services[web]["environment"]["SIGNER_SOCKETS"]
        assert socket in " ".join(services[signer]["command"])
        shared = {v.split(":")[0] for v in services[web]["volumes"]} & {v.split(":")[0] for v in services[signer]["volumes"]}
        assert shared, f"{web} and {signer} share no volume for the socket"


def test_signers_get_their_master_key_but_not_the_database_secrets():
    for name, service in _services().items():
        if "signer" not in name:
            continue
        assert "SIGNING_MASTER_KEY_FILE" in service["environment"]
        assert not service.get("env_file")
        assert not {"DATABASE_URL", "SECRET_KEY", "S3_SECRET_ACCESS_KEY"} & set(service["environment"])


def test_every_service_declares_its_environment():
    for name, service in _services().items():
        assert "environment" in service, name


def test_no_secret_is_written_in_the_repository():
    for name, service in _services().items():
        for key, value in (service.get("environment") or {}).items():
            if SECRET_NAME.search(key) or "://" in str(value) and "@" in str(value):
                assert "${" in str(value), f"{name}.{key} must come from deploy/.env"
    example = (DEPLOY / "env.example").read_text()
    for line in example.splitlines():
        key, _, value = line.partition("=")
        if SECRET_NAME.search(key):
            assert value == "", f"env.example carries a value for {key}"
    assert "deploy/.env" in (DEPLOY.parent / ".gitignore").read_text().splitlines()


def test_nginx_upstream_lists_the_compose_web_nodes():
    upstream = re.search(r"upstream homepocket_web \{(.*?)\}", NGINX.read_text(), re.S).group(1)
    assert set(re.findall(r"server (\w+):8000", upstream)) == _asgi_nodes("granian")
    assert "least_conn;" in upstream


def test_websockets_go_to_the_uvicorn_nodes_with_the_web_nodes_as_backup():
    conf = NGINX.read_text()
    upstream = re.search(r"upstream homepocket_ws \{(.*?)\}", conf, re.S).group(1)
    assert "least_conn;" in upstream
    assert _asgi_nodes("uvicorn") == {"ws"}
    primary = set(re.findall(r"server (\w+):8000 max_fails", upstream))
    backup = set(re.findall(r"server (\w+):8000 backup;", upstream))
    assert primary == _asgi_nodes("uvicorn")
    assert backup == _asgi_nodes("granian")  # a draining or dead WebSocket node's devices land somewhere
    ws = re.search(r"location /ws/ \{(.*?)\}", conf, re.S).group(1)
    assert "proxy_pass http://homepocket_ws;" in ws
    # The draining node's 503 on an upgrade is retried on another node (docs/relay.md, draining).
    assert re.search(r"proxy_next_upstream [^;]*http_503", conf)


def test_the_websocket_node_drains_like_a_web_node_and_needs_no_signer():
    services = _services()
    ws, web = services["ws"], services["web1"]
    assert ws["environment"]["ASGI_SERVER"] == "uvicorn"
    assert ws["stop_signal"] == web["stop_signal"] == "SIGTERM" and ws["stop_grace_period"] == web["stop_grace_period"]
    assert ws["healthcheck"] == web["healthcheck"]
    assert "signer" not in ws["environment"]["READY_REQUIRED"].split(",")
    assert "ws" in services["nginx"]["depends_on"]


def test_nginx_upgrades_websockets_with_long_timeouts():
    conf = NGINX.read_text()
    ws = re.search(r"location /ws/ \{(.*?)\}", conf, re.S).group(1)
    assert "proxy_set_header Upgrade $http_upgrade;" in ws
    assert "proxy_set_header Connection $connection_upgrade;" in ws
    timeout = re.search(r"proxy_read_timeout (\d+)([smh]);", ws)
    assert timeout and int(timeout.group(1)) * {"s": 1, "m": 60, "h": 3600}[timeout.group(2)] >= 600


def test_nginx_passes_the_request_id_and_overwrites_the_forwarded_address():
    conf = NGINX.read_text()
    assert "proxy_set_header X-Request-ID $homepocket_request_id;" in conf
    assert "map $http_x_request_id $homepocket_request_id" in conf
    # $remote_addr, not $proxy_add_x_forwarded_for: a client-supplied chain is never passed on.
    assert "proxy_set_header X-Forwarded-For $remote_addr;" in conf
    assert "$proxy_add_x_forwarded_for" not in conf


def test_nodes_trust_forwarded_addresses_only_from_nginx():
    services = _services()
    nginx_ip = services["nginx"]["networks"]["backend"]["ipv4_address"]
    assert services["web1"]["environment"]["TRUSTED_PROXIES"] == f"{nginx_ip}/32"
    assert "TRUSTED_PROXIES" in (DEPLOY.parent / "docs" / "deploy.md").read_text()


def test_docker_compose_config_accepts_the_file(tmp_path):
    """With the compose plugin (CI images that have it), compose itself validates the file."""
    docker = shutil.which("docker")
    has_plugin = docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0
    if not has_plugin:
        # No plugin here: the YAML checks above are the validation; still prove the file loads whole.
        assert yaml.safe_load(COMPOSE.read_text())["services"]
        return
    env = tmp_path / ".env"
    env.write_text("POSTGRES_PASSWORD=x\nS3_ACCESS_KEY_ID=x\nS3_SECRET_ACCESS_KEY=x\nSECRET_KEY=x\nAUDIT_HASH_KEY=x\n")
    result = subprocess.run(
        [docker, "compose", "--env-file", str(env), "-f", str(COMPOSE), "config", "--quiet"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
