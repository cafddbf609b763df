"""The rule catalogue is explicit: every rule any module declares is exported in that module's
RULES and reaches the catalogue through a registered check; nothing registers on import."""

from __future__ import annotations

import ast
import subprocess
import sys
from importlib import import_module
from pathlib import Path

import pytest

from bastion.catalogue import DuplicateRuleError, all_rules, rules_by_id
from bastion.rules import Rule

SRC = Path(__file__).parents[1] / "src" / "bastion"


def _declared() -> dict[str, set[str]]:
    """module name -> rule ids declared in it with Rule(id="...")."""
    out: dict[str, set[str]] = {}
    for path in SRC.rglob("*.py"):
        module = ".".join(("bastion", *path.relative_to(SRC).with_suffix("").parts))
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Rule":
                for keyword in node.keywords:
                    if keyword.arg == "id" and isinstance(keyword.value, ast.Constant):
                        out.setdefault(module.removesuffix(".__init__"), set()).add(
                            keyword.value.value
                        )
    return out


def test_catalogue_holds_every_rule_declared_anywhere() -> None:
    declared = {rule_id for ids in _declared().values() for rule_id in ids}
    assert declared == {rule.id for rule in all_rules()}
    assert "PT001" in rules_by_id() and "PT002" in rules_by_id() and "SKP001" in rules_by_id()


def test_every_module_exports_exactly_the_rules_it_declares() -> None:
    for module_name, ids in _declared().items():
        module = import_module(module_name)
        exported = {rule.id for rule in getattr(module, "RULES", ())}
        own = {v.id for v in vars(module).values() if isinstance(v, Rule) and v.id in ids}
        assert own == ids, module_name
        assert ids <= exported, f"{module_name} does not export {sorted(ids - exported)}"


def test_importing_a_module_does_not_register_anything() -> None:
    """The catalogue is built from the listed modules, not from what happens to be imported:
    a fresh interpreter that imports one scanner sees no registry anywhere."""
    code = (
        "import bastion.rules as r, bastion.scan.pickle\n"
        "assert not any(isinstance(v, dict) and v and all(k[:3].isalpha() for k in v) "
        "for v in vars(r).values()), 'registry in bastion.rules'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_conflicting_duplicate_ids_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    import bastion.catalogue as catalogue

    rule = rules_by_id()["PKL001"]
    twin = rule.model_copy(update={"title": "something else"})
    fake = type("M", (), {"RULES": (twin,)})
    monkeypatch.setattr(catalogue, "OTHER_RULE_MODULES", ("fake_rules_module",))
    monkeypatch.setitem(sys.modules, "fake_rules_module", fake)  # type: ignore[arg-type]
    catalogue.rules_by_id.cache_clear()
    try:
        with pytest.raises(DuplicateRuleError, match="PKL001"):
            catalogue.rules_by_id()
    finally:
        catalogue.rules_by_id.cache_clear()


def test_layers_hold() -> None:
    """The import layering of DESIGN.md, enforced by import-linter's contracts in
    pyproject.toml (cli → project → capabilities → report/policy/store/isolation → bottom)."""
    lint = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run(
        [str(lint), "--config", str(SRC.parents[1] / "pyproject.toml")],
        capture_output=True,
        text=True,
        cwd=SRC.parents[1],
    )
    assert result.returncode == 0, result.stdout + result.stderr
