"""The documentation kept with the code: the generated API reference is up to date."""

import importlib.util
from pathlib import Path

DOCS = Path(__file__).resolve().parent.parent / "docs"


def generator():
    spec = importlib.util.spec_from_file_location(
        "api_reference", DOCS / "generate_api_reference.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_api_reference_is_not_stale():
    """docs/api.md is what docs/generate_api_reference.py makes of today's document."""
    module = generator()
    assert (DOCS / "api.md").read_text() == module.render(module.current_document()), (
        "docs/api.md is stale: run python docs/generate_api_reference.py"
    )


def test_api_reference_covers_every_operation():
    """Each operation of the document has its section in the reference."""
    module = generator()
    document = module.current_document()
    reference = (DOCS / "api.md").read_text()
    for path, item in document["paths"].items():
        for method in item:
            if method != "parameters":
                assert f"## `{method.upper()} {path}`" in reference


def section(reference: str, heading: str) -> str:
    """The text of the reference's section ``heading`` (up to the next heading)."""
    return reference.split(f"## `{heading}`\n", 1)[1].split("\n## ", 1)[0]


def test_the_reference_marks_the_bodies_that_are_optional():
    """A body the document does not require (the reconcile's POST, a dry run without one)
    is marked optional; a required one is not."""
    reference = (DOCS / "api.md").read_text()
    for path in ("/api/v1/reconcile", "/api/v1/reconcile/{cloud}"):
        assert "Body (`reconcile`, optional):" in section(reference, f"POST {path}")
    assert "Body (`vm_assign`):" in section(reference, "PUT /api/v1/vm/action/assign")


def test_check_mode_tells_a_stale_reference(tmp_path, monkeypatch):
    """--check exits 1 when the reference differs, 0 when it is current."""
    module = generator()
    stale = tmp_path / "api.md"
    stale.write_text("# old\n")
    monkeypatch.setattr(module, "REFERENCE", stale)
    assert module.main(["--check"]) == 1
    assert module.main([]) == 0
    assert module.main(["--check"]) == 0
