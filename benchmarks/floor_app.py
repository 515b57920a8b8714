"""The floor for CLI latency: a minimal Typer app that prints a 20-row Rich table.

It runs in the same interpreter and environment as jobctl, so the ratio `jobctl status` / this app
is what jobctl adds on top of the framework (interpreter start, Typer/Click, Rich).
"""

import typer

app = typer.Typer()


@app.command()
def main() -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None, pad_edge=False, header_style="bold", show_edge=False)
    for col in ("ID", "NAME", "STATUS", "RESOURCES", "SUBMITTED", "START TIME", "END TIME", "DURATION"):
        table.add_column(col)
    for i in range(20):
        table.add_row(
            str(1000 - i),
            f"job-{i}",
            "COMPLETED",
            "1x(1CPU, 1GiMEM)",
            "2 hrs, 5 mins",
            "08/08/25 04:11PM",
            "08/08/25 04:12PM",
            "1m 3s",
        )
    console = Console()
    if not console.is_terminal:  # as jobctl does when piped: a wide console, so no cell is wrapped
        console = Console(width=400)
    console.print(table)


if __name__ == "__main__":
    app()
