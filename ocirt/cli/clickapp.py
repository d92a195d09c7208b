"""The click view of the command table: --help, usage errors, and the unusual argv.

Built from ``ocirt.cli.table`` on demand, so the common path never imports click.
"""

from __future__ import annotations

from typing import Any

import click

from ocirt import OCI_VERSION, __version__
from ocirt.cli.table import COMMANDS, GLOBAL_OPTS, Command, Opt


def _option(opt: Opt) -> click.Option:
    kwargs: dict[str, Any] = {"help": opt.help}
    if opt.kind == "flag":
        kwargs.update(is_flag=True, default=False)
    elif opt.kind == "multi":
        kwargs.update(multiple=True)
    else:
        kwargs.update(default=opt.default, metavar=opt.metavar or None,
                      type=int if opt.kind == "int" else
                      click.Choice(opt.choices) if opt.choices else str,
                      show_default=opt.default not in (None, 0, ""))
    return click.Option([*opt.names, opt.dest], **kwargs)


def _command(spec: Command) -> click.Command:
    params: list[click.Parameter] = [_option(o) for o in spec.opts]
    for arg in spec.args:
        params.append(click.Argument([arg.name.replace("-", "_")], required=arg.required,
                                     nargs=-1 if arg.rest else 1,
                                     metavar=arg.name.upper()))

    @click.pass_context
    def callback(ctx: click.Context, /, **values: Any) -> None:
        from ocirt.cli.commands import dispatch

        for opt in spec.opts:
            if opt.kind == "multi":
                values[opt.dest] = list(values[opt.dest])
        for arg in spec.args:
            key = arg.name.replace("-", "_")
            if arg.rest:
                values[key] = list(values[key])
        ctx.exit(dispatch(ctx.obj, spec, values))

    command = click.Command(spec.name, params=params, callback=callback, help=spec.help,
                            short_help=spec.help, context_settings={
                                "help_option_names": ["-h", "--help"]})
    if spec.usage:
        command.options_metavar = ""
        command.collect_usage_pieces = lambda ctx: [spec.usage.partition(" ")[2]]  # type: ignore
    return command


def app() -> click.Group:
    @click.group(context_settings={"help_option_names": ["-h", "--help"]},
                 help="ocirt: an OCI container runtime (runc-compatible command line).")
    @click.version_option(__version__, "--version", "-v", prog_name="ocirt",
                          message=f"%(prog)s version %(version)s\nspec: {OCI_VERSION}")
    @click.pass_context
    def group(ctx: click.Context, /, **globals_: Any) -> None:
        ctx.obj = globals_

    for opt in GLOBAL_OPTS:
        group.params.append(_option(opt))
    for spec in COMMANDS.values():
        group.add_command(_command(spec))
    return group


def main(argv: list[str]) -> int:
    try:
        app().main(argv, prog_name="ocirt", standalone_mode=False)
    except click.exceptions.Exit as done:
        return done.exit_code
    except click.ClickException as err:
        err.show()
        return 1
    except click.exceptions.Abort:
        return 1
    return 0
