"""Route templates as the Functions host (ASP.NET Core routing) interprets them."""

from __future__ import annotations

import pytest

from sandbox.host.routes import RouteTemplate


@pytest.mark.parametrize(
    ("template", "path", "expected"),
    [
        ("orchestrators/{name}", "orchestrators/chain", {"name": "chain"}),
        ("orchestrators/{name}", "Orchestrators/chain/", {"name": "chain"}),
        ("orchestrators/{name}", "orchestrators", None),
        ("items/{id:int}", "items/42", {"id": "42"}),
        ("items/{id:int}", "items/4.2", None),
        ("items/{id:int}", "items/99999999999", None),
        ("hello/{who?}", "hello", {}),
        ("hello/{who?}", "hello/ann", {"who": "ann"}),
        ("page/{n:int=1}", "page", {"n": "1"}),
        ("files/{*path}", "files/a/b/c.txt", {"path": "a/b/c.txt"}),
        ("files/{name}.{ext}", "files/report.pdf", {"name": "report", "ext": "pdf"}),
        ("v/{key:alpha:minlength(2)}", "v/ab", {"key": "ab"}),
        ("v/{key:alpha:minlength(2)}", "v/a", None),
        ("v/{key:alpha:minlength(2)}", "v/a1", None),
        ("g/{id:guid}", "g/6f9619ff-8b86-d011-b42d-00c04fc964ff", {"id": "6f9619ff-8b86-d011-b42d-00c04fc964ff"}),
        ("g/{id:guid}", "g/not-a-guid", None),
        ("r/{n:range(1,5)}", "r/5", {"n": "5"}),
        ("r/{n:range(1,5)}", "r/6", None),
    ],
)
def test_template_matching(template: str, path: str, expected: dict[str, str] | None) -> None:
    assert RouteTemplate(template).match(path) == expected


def test_literal_routes_take_precedence_over_parameters() -> None:
    templates = sorted(
        [RouteTemplate("items/{*rest}"), RouteTemplate("items/{id}"), RouteTemplate("items/new")],
        key=lambda template: template.precedence,
    )

    assert [t.template for t in templates] == ["items/new", "items/{id}", "items/{*rest}"]
