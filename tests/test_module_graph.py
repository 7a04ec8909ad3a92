"""irevnet_tf's modules import each other without circles.

A circle (a imports b, b imports a, even inside a function) means neither module can be
understood or loaded alone. Package `__init__` files are left out: importing a package's
submodules is their job. Imports are read from the source (module level and inside
functions), so nothing is imported to check them.
"""

import ast
import os

import irevnet_tf

PACKAGE_DIR = os.path.dirname(os.path.abspath(irevnet_tf.__file__))


def _modules():
    """{module name: source path} of every irevnet_tf module but the package __init__s."""
    modules = {}
    root = os.path.dirname(PACKAGE_DIR)
    for directory, _, files in os.walk(PACKAGE_DIR):
        for filename in files:
            if filename.endswith(".py") and filename != "__init__.py":
                path = os.path.join(directory, filename)
                modules[os.path.relpath(path, root)[:-3].replace(os.sep, ".")] = path
    return modules


def import_graph():
    """{module: set of irevnet_tf modules it imports}."""
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        with open(path, encoding="utf-8") as handle:
            tree = ast.parse(handle.read(), path)
        imported = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                imported.add(node.module)
                imported.update(f"{node.module}.{alias.name}" for alias in node.names)
        graph[name] = {other for other in imported if other in modules and other != name}
    return graph


def find_circle(graph):
    """One circle [a, b, ..., a] of `graph`, or None."""
    state = {}

    def visit(node, path):
        state[node] = "open"
        for successor in sorted(graph[node]):
            if state.get(successor) == "open":
                return path[path.index(successor):] + [successor]
            if successor not in state:
                found = visit(successor, path + [successor])
                if found:
                    return found
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start, [start])
            if found:
                return found
    return None


def test_find_circle_finds_one():
    assert find_circle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_circle({"a": {"b"}, "b": set()}) is None


def test_no_module_circles():
    graph = import_graph()
    assert "irevnet_tf.data.errors" in graph and "irevnet_tf.data.info" in graph
    assert "irevnet_tf.data.info" in graph["irevnet_tf.data.errors"]
    circle = find_circle(graph)
    assert circle is None, " -> ".join(circle)
