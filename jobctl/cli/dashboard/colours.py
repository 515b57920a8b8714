"""The terminal table's colour per state (`jobctl.cli.views.STATE_STYLE`) as CSS for the pages.

Rich style names become colours readable on a light page; `bold` stays bold. The stylesheet is
made from STATE_STYLE itself, so a state coloured differently in the terminal changes here too.
"""

from __future__ import annotations

# Rich colour names -> a shade of that colour with enough contrast on white (text) and for white
# text on it (bars).
RICH_TO_CSS = {
    "green": "#1a7f37",
    "red": "#cf222e",
    "yellow": "#9a6700",
    "magenta": "#a626a4",
    "cyan": "#0a7a8f",
    "blue": "#0969da",
    "white": "#57606a",
    "dim": "#6e7781",
}
DEFAULT = "#57606a"


def colour_of(style: str) -> tuple[str, bool]:
    """('#hex', bold) for a Rich style such as 'bold green' or 'dim'."""
    words = style.split()
    bold = "bold" in words
    colour = next((RICH_TO_CSS[w] for w in words if w in RICH_TO_CSS and w != "dim"), None)
    if colour is None:
        colour = RICH_TO_CSS["dim"] if "dim" in words else DEFAULT
    return colour, bold


def state_colours() -> dict[str, str]:
    from jobctl.cli.views import STATE_STYLE

    return {state: colour_of(style)[0] for state, style in STATE_STYLE.items()}


def stylesheet() -> str:
    """`.st-STATE` classes: the text colour (and weight) of STATUS, the fill of a bar."""
    from jobctl.cli.views import STATE_STYLE

    lines = ["/* made from jobctl.cli.views.STATE_STYLE: the terminal table's colours */"]
    for state, style in STATE_STYLE.items():
        colour, bold = colour_of(style)
        weight = "font-weight:bold;" if bold else ""
        lines.append(f".st-{state}{{color:{colour};{weight}}}")
        lines.append(f"svg .st-{state}{{fill:{colour};}}")
    return "\n".join(lines) + "\n"
