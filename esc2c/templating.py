"""The one jinja2 environment every generated file is rendered with: templates/ (see esc2c.resources) as the
loader's root, so templates are named by their path below it ("model.c.j2", "host/main.c.j2",
"tflm/main.cc.j2"); an undefined variable is an error; a template's final newline is kept."""
from __future__ import annotations

import functools

import jinja2

from esc2c.resources import templates_dir


@functools.lru_cache(maxsize=None)
def environment() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(templates_dir())), undefined=jinja2.StrictUndefined,
                              keep_trailing_newline=True)


def render(template: str, **context) -> str:
    """``template`` (a path below templates/) rendered with ``context``."""
    return environment().get_template(template).render(**context)
