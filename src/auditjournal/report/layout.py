"""Lay the pipeline graph out for the page: layers by topological depth, left to right.

A node's layer is the length of the longest path to it from a node without
incoming edges (Kahn's algorithm); nodes on a cycle, which a pipeline should
not have, go one layer past the rest. Within a layer nodes are ordered by the
mean position of their predecessors (one barycentre sweep, which untangles
the usual fan-out/fan-in shapes), then by registration order. Edges are cubic
curves from a node's right side to the next node's left side; an edge that
does not go forward (same layer or backwards) loops below the drawing.

Hand-written instead of a graph library: the pipelines are small DAGs, the
result must be plain numbers the page can draw without any script library,
and this is about a hundred lines.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

__all__ = ["NODE_HEIGHT", "NODE_WIDTH", "EdgeShape", "Layout", "layers", "layout"]

NODE_WIDTH: Final = 150.0
NODE_HEIGHT: Final = 54.0
_GAP_X: Final = 84.0
_GAP_Y: Final = 26.0
_MARGIN: Final = 16.0
_LOOP_DROP: Final = 40.0
_LABEL_STEP: Final = 30.0


@dataclass(frozen=True)
class EdgeShape:
    path: str  # SVG path data
    label_x: float
    label_y: float


@dataclass(frozen=True)
class Layout:
    layer: dict[str, int]
    position: dict[str, tuple[float, float]]  # top-left corner
    edges: list[EdgeShape]  # in the order of the edges given
    width: float
    height: float


def layers(nodes: Sequence[str], edges: Sequence[tuple[str, str]]) -> dict[str, int]:
    """Each node's layer: the longest path to it from a node without incoming edges."""
    known = set(nodes)
    succ: dict[str, list[str]] = defaultdict(list)
    indegree = dict.fromkeys(nodes, 0)
    for a, b in edges:
        if a in known and b in known and a != b:
            succ[a].append(b)
            indegree[b] += 1
    layer = dict.fromkeys(nodes, 0)
    queue = deque(n for n in nodes if indegree[n] == 0)
    done: set[str] = set()
    while queue:
        node = queue.popleft()
        done.add(node)
        for nxt in succ[node]:
            layer[nxt] = max(layer[nxt], layer[node] + 1)
            indegree[nxt] -= 1
            if indegree[nxt] == 0:
                queue.append(nxt)
    past = max((layer[n] for n in done), default=-1) + 1
    for node in nodes:
        if node not in done:  # on (or behind) a cycle
            layer[node] = past
    return layer


def layout(nodes: Sequence[str], edges: Sequence[tuple[str, str]]) -> Layout:
    """Positions for ``nodes`` (in registration order) and shapes for ``edges``."""
    layer = layers(nodes, edges)
    columns: dict[int, list[str]] = defaultdict(list)
    for node in nodes:
        columns[layer[node]].append(node)
    preds: dict[str, list[str]] = defaultdict(list)
    for a, b in edges:
        if a in layer and b in layer and layer[a] < layer[b]:
            preds[b].append(a)
    order: dict[str, int] = {}  # a node's place within its layer, once its layer is done
    for index in sorted(columns):
        column = columns[index]
        registered = {node: i for i, node in enumerate(column)}
        column.sort(key=lambda node: _barycentre(node, preds, order, registered))
        order.update((node, i) for i, node in enumerate(column))
    tallest = max((len(c) for c in columns.values()), default=0)
    body = tallest * NODE_HEIGHT + max(tallest - 1, 0) * _GAP_Y
    position: dict[str, tuple[float, float]] = {}
    for index, column in columns.items():
        height = len(column) * NODE_HEIGHT + (len(column) - 1) * _GAP_Y
        top = _MARGIN + (body - height) / 2
        for i, node in enumerate(column):
            x = _MARGIN + index * (NODE_WIDTH + _GAP_X)
            position[node] = (x, top + i * (NODE_HEIGHT + _GAP_Y))
    width = _MARGIN * 2 + max(len(columns), 1) * (NODE_WIDTH + _GAP_X) - _GAP_X
    height = _MARGIN * 2 + body
    shapes: list[EdgeShape] = []
    loops = 0
    twins: dict[tuple[str, str], int] = defaultdict(int)
    for a, b in edges:
        if a not in position or b not in position:
            shapes.append(EdgeShape("", 0.0, 0.0))
            continue
        if layer[a] < layer[b]:
            shape = _forward(position[a], position[b])
        else:
            loops += 1
            shape = _loop(position[a], position[b], height + _LOOP_DROP * loops)
        # edges between the same two nodes share a curve: stack their labels
        nudge = twins[(a, b)] * _LABEL_STEP
        twins[(a, b)] += 1
        shapes.append(EdgeShape(shape.path, shape.label_x, shape.label_y + nudge))
    if loops:
        height += _LOOP_DROP * loops + _MARGIN
    return Layout(layer, position, shapes, width, height)


def _barycentre(
    node: str, preds: dict[str, list[str]], order: dict[str, int], registered: dict[str, int]
) -> tuple[float, int]:
    """Sort key: the mean place of the node's predecessors, then registration order."""
    placed = [order[p] for p in preds[node] if p in order]
    return (sum(placed) / len(placed) if placed else float("inf"), registered[node])


def _forward(a: tuple[float, float], b: tuple[float, float]) -> EdgeShape:
    x1, y1 = a[0] + NODE_WIDTH, a[1] + NODE_HEIGHT / 2
    x2, y2 = b[0], b[1] + NODE_HEIGHT / 2
    bend = (x2 - x1) / 2
    path = (
        f"M{x1:.1f},{y1:.1f} C{x1 + bend:.1f},{y1:.1f} {x2 - bend:.1f},{y2:.1f} {x2:.1f},{y2:.1f}"
    )
    # the curve's midpoint (t = 1/2) lies halfway between its ends
    return EdgeShape(path, (x1 + x2) / 2, (y1 + y2) / 2)


def _loop(a: tuple[float, float], b: tuple[float, float], bottom: float) -> EdgeShape:
    x1, y1 = a[0] + NODE_WIDTH / 2, a[1] + NODE_HEIGHT
    x2, y2 = b[0] + NODE_WIDTH / 2, b[1] + NODE_HEIGHT
    path = f"M{x1:.1f},{y1:.1f} C{x1:.1f},{bottom:.1f} {x2:.1f},{bottom:.1f} {x2:.1f},{y2:.1f}"
    return EdgeShape(path, (x1 + x2) / 2, (y1 + y2) / 2 + 0.75 * (bottom - (y1 + y2) / 2))
