"""The least-privilege ACL: key patterns for the stream and its companions, every scripted command granted."""

from __future__ import annotations

import re

from airflow_dbstream.core.acl import REQUIRED_COMMANDS, acl_rules, consumer_acl_rules, key_patterns
from airflow_dbstream.hooks.scripts import SCRIPT_NAMES, script_file, script_source


def test_acl_patterns_cover_the_stream_and_its_companions():
    assert key_patterns("crm:*") == ["crm:*", "{crm:*}:*"]
    assert key_patterns("crm:{orders}") == ["crm:{orders}", "crm:{orders}:*"]
    rules = acl_rules("orders")
    assert rules[:3] == ["resetkeys", "~orders", "~{orders}:*"]
    assert {r[1:] for r in rules if r.startswith("+")} == set(REQUIRED_COMMANDS)
    # every command the scripts call is granted
    for name in (*SCRIPT_NAMES, "fence", "lib"):
        text = script_file(name) if name in ("fence", "lib") else script_source(name)
        for command in re.findall(r"redis\.call\('(\w+)'", text):
            assert command.lower() in REQUIRED_COMMANDS, (name, command)


def test_a_consumer_gets_its_stream_only_and_no_write():
    rules = consumer_acl_rules("customers")
    assert rules[:4] == ["resetkeys", "~customers", "resetchannels", "-@all"]
    assert "+xreadgroup" in rules and "+xautoclaim" in rules and "+xack" in rules
    assert not {"+xadd", "+evalsha", "+del"} & set(rules)
    assert "+cluster|slots" in consumer_acl_rules("customers", cluster=True)
