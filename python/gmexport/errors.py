"""The one exception the exporter raises for a model it cannot write exactly."""


class ExportError(Exception):
    """A module (named by its path in the model) that has no exact gmserve
    translation, and why. Nothing is ever exported approximately instead."""

    def __init__(self, where, reason):
        super().__init__(f"{where}: {reason}")
        self.where = where
        self.reason = reason
