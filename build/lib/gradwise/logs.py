"""The name of gradwise's logger and of the handler the CLI prints log lines through."""

LOG = "gradwise"
CONSOLE_HANDLER = "gradwise.console"  # set by the CLI: the pipeline then adds no stderr handler
