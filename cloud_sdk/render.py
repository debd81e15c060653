"""Text rendering of verification results for people (rich tables)."""

from rich.console import Console
from rich.table import Table

from cloud_sdk.chain import ChainResult, RegisterStatus
from shared_spec.algorithms import alg_name
from shared_spec.findings import SEVERITY_ERROR, SEVERITY_INFO, Finding


def register_table(chain: ChainResult, only_logged: bool = True) -> Table:
    """One row per register, one column per bank: a check mark, or what diverged."""
    rows: dict[tuple[str, int], dict[int, RegisterStatus]] = {}
    banks: set[int] = set()
    for st in chain.registers:
        rows.setdefault((st.index_kind, st.index), {})[st.alg] = st
        banks.add(st.alg)
    logged = {(kind, getattr(ce.event, "index", -1))
              for kind, events in chain.events.items() for ce in events
              if getattr(ce.event, "extends", True)}
    table = Table(title="registers: live value vs replayed log")
    table.add_column("register")
    table.add_column("events", justify="right")
    order = sorted(banks)
    for alg in order:
        table.add_column(alg_name(alg))
    counts: dict[tuple[str, int], int] = {}
    for kind, events in chain.events.items():
        for ce in events:
            if getattr(ce.event, "extends", True):
                key = (kind, ce.event.index)  # type: ignore[attr-defined]
                counts[key] = counts.get(key, 0) + 1
    for key in sorted(rows):
        bank = rows[key]
        if only_logged and key not in logged and all(s.matches for s in bank.values()):
            continue
        cells = []
        for alg in order:
            status = bank.get(alg)
            if status is None or status.live is None:
                cells.append("[dim]-[/dim]")
            elif status.matches:
                cells.append("[green]\u2713[/green] " + status.live.hex()[:12])
            else:
                where = ""
                if status.first_divergent is not None:
                    where = " first bad: %s #%d" % (status.first_divergent.source,
                                                    status.first_divergent.seq_in_source)
                cells.append("[red]\u2717[/red]" + where)
        label = next(iter(bank.values())).label
        table.add_row(label, str(counts.get(key, 0)), *cells)
    return table


def print_findings(console: Console, findings: list[Finding], show_info: bool = False) -> None:
    shown = [f for f in findings if show_info or f.severity != SEVERITY_INFO]
    if not shown:
        console.print("no findings")
        return
    for f in shown:
        style = {"error": "red", "warning": "yellow"}.get(f.severity, "cyan")
        console.print("[%s]%-7s[/%s] %s: %s" % (style, f.severity, style, f.code, f.message),
                      highlight=False)


def verdict_line(ok: bool) -> str:
    if ok:
        return "[bold green]VERIFIED[/bold green]"
    return "[bold red]NOT VERIFIED[/bold red]"


__all__ = ["SEVERITY_ERROR", "print_findings", "register_table", "verdict_line"]
