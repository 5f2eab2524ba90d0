"""Command groups other distributions add to `edge`, found through an entry point group.

The kiosk wheel (`bansos-edge`) carries only kiosk commands. `bansos-edge-hq` registers
`edge hq`, `edge demo`, `edge eval` and `edge liveness` under `bansos_edge.commands`, so a
development install has them all and a kiosk simply does not. Loaded on first use, so
`edge run` never imports HQ code. A known extra that is not installed answers with one
line saying where it lives (exit 2), not click's bare "No such command".
"""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points

import click

from edge.errors import BadInput

ENTRY_POINT_GROUP = "bansos_edge.commands"
EXTRA_DISTRIBUTION = "bansos-edge-hq"
# the commands bansos-edge-hq provides, with what each is for (for the kiosk's message)
KNOWN_EXTRAS = {
    "hq": "HQ: keys, devices, rosters, ingest, reports",
    "demo": "the end-to-end demo (with its throw-away CA)",
    "eval": "face accuracy on a labelled set",
    "liveness": "presentation-attack figures on photos",
}


def _extra_points() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def _absent(name: str) -> click.Command:
    """A hidden stand-in for an extra that is not installed: one clear line, exit 2."""

    def refuse() -> None:
        raise BadInput(
            f"`edge {name}` ({KNOWN_EXTRAS[name]}) is not installed here: it ships in the "
            f"{EXTRA_DISTRIBUTION} distribution, not on kiosks"
        )

    return click.Command(
        name,
        callback=refuse,
        hidden=True,
        add_help_option=False,
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    )


class ExtensibleGroup(click.Group):
    """A click group that also offers the commands registered under ENTRY_POINT_GROUP."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *_extra_points()})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            return command
        point = _extra_points().get(cmd_name)
        if point is not None:
            loaded = point.load()
            if not isinstance(loaded, click.Command):
                raise BadInput(f"entry point {point.value} is not a click command")
            self.add_command(loaded, cmd_name)
            return loaded
        if cmd_name in KNOWN_EXTRAS:
            return _absent(cmd_name)
        return None
