"""The roles file: well-formed, names only layers and fields that exist, and answers as documented."""

from __future__ import annotations

from twin.catalog import LAYERS
from twin.security.accounts import ROLES
from twin.security.policy import Policy


def test_roles_file_names_real_layers_fields_and_roles():
    policy = Policy.from_file()
    assert set(policy.roles) == set(ROLES)
    for role in policy.roles.values():
        for layer in role.layers:
            assert layer == "*" or layer in LAYERS, (role.name, layer)
        for layer, fields in role.hidden_fields.items():
            columns = {c.name for c in LAYERS[layer].table.columns}
            assert fields <= columns, (role.name, layer, fields - columns)


def test_answers():
    p = Policy.from_file()
    assert p.can(["public"], "buildings", "read") and not p.can(["public"], "pipelines", "read")
    assert not p.can(["public"], "buildings", "write") and p.can(["field"], "events", "write")
    assert p.hidden(["public"], "buildings") == {"households"}
    assert p.hidden(["field"], "pipelines") == {"owner", "pressure_mpa"}
    # a second role that sees the field un-hides it; a role that cannot read the layer does not
    assert p.hidden(["field", "operator"], "pipelines") == frozenset()
    assert p.hidden(["public", "field"], "buildings") == frozenset()
    assert p.readable(["public"], ["pipelines", "roads"]) == ["roads"]
    assert not p.can(["nonsense"], "roads", "read")
