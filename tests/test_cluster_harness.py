"""The cluster harness runs the operator's deploy/nginx.conf, changed only where this machine differs
from the compose network (tests/harness/cluster.py): these tests pin what those changes are, so
what CI exercises through nginx is what operators deploy. No nginx binary is needed here."""

from __future__ import annotations

import difflib
import re
from pathlib import Path

import pytest

from tests.harness.cluster import DEPLOY_NGINX_CONF, PROXY_ADDRESS, nginx_conf_for_harness

NODES = ["127.0.0.1:41001", "127.0.0.1:41002"]
TEMP = Path("/tmp/hp-nginx-test")


def harness_conf(conf: str | None = None, **options) -> str:
    options = {"listen": "127.0.0.1:48080", "upstreams": {"homepocket_web": NODES}, "default": NODES, "temp_dir": TEMP, **options}
    return nginx_conf_for_harness(conf or DEPLOY_NGINX_CONF.read_text(), **options)


def changed_lines(before: str, after: str) -> tuple[list[str], list[str]]:
    diff = list(difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0))
    removed = [line[1:].strip() for line in diff if line.startswith("-") and not line.startswith("---")]
    added = [line[1:].strip() for line in diff if line.startswith("+") and not line.startswith("+++")]
    return removed, added


def test_only_the_listen_address_upstream_servers_temp_paths_and_proxy_address_change():
    deploy = DEPLOY_NGINX_CONF.read_text()
    removed, added = changed_lines(deploy, harness_conf())
    assert all(re.fullmatch(r"server \S+:8000 .*;|listen 80;", line) for line in removed), removed
    for line in added:
        assert re.fullmatch(
            r"server 127\.0\.0\.1:4100[12] .*;|listen 127\.0\.0\.1:48080;|\w+_temp_path /tmp/hp-nginx-test/\w+;"
            r"|proxy_bind 127\.0\.0\.2;.*|# harness .*",
            line,
        ), line


def test_each_harness_server_keeps_the_deploy_files_server_parameters():
    deploy_parameters = re.search(r"server web1:8000( [^;]*);", DEPLOY_NGINX_CONF.read_text()).group(1)
    conf = harness_conf()
    for address in NODES:
        assert f"server {address}{deploy_parameters};" in conf
    assert "web1:8000" not in conf and "web2:8000" not in conf


def test_the_nodes_are_reached_from_the_address_they_trust():
    assert f"proxy_bind {PROXY_ADDRESS};" in harness_conf()


def test_an_upstream_the_harness_does_not_name_gets_the_default_nodes():
    # The WebSocket nodes' upstream (/ws/) is tested on the web nodes, with its own parameters.
    deploy_ws = re.search(r"upstream homepocket_ws \{(.*?)\}", DEPLOY_NGINX_CONF.read_text(), re.S).group(1)
    parameters = re.search(r"server ws:8000( [^;]*);", deploy_ws).group(1)
    ws = re.search(r"upstream homepocket_ws \{(.*?)\}", harness_conf(), re.S).group(1)
    assert re.findall(r"server (\S+)" + re.escape(parameters) + ";", ws) == NODES
    assert "least_conn;" in ws and "backup" not in ws


def test_an_upstream_without_harness_addresses_is_refused():
    conf = DEPLOY_NGINX_CONF.read_text().replace("upstream homepocket_web", "upstream homepocket_other")
    with pytest.raises(ValueError, match="homepocket_other"):
        harness_conf(conf, default=None)


def test_a_deploy_file_without_its_listen_line_is_refused_rather_than_half_applied():
    with pytest.raises(ValueError, match="listen 80"):
        harness_conf(DEPLOY_NGINX_CONF.read_text().replace("listen 80;", "listen 8080;"))
