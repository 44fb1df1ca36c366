"""The study's commands and their library: one thin module per ``blurdm-bench`` subcommand here (arguments,
the params a stage may read, one call into the library; :mod:`pipelines.cli` dispatches), and one package
per concern beside them: :mod:`~pipelines.core` (params, errors, files, layout), :mod:`~pipelines.data`,
:mod:`~pipelines.training`, :mod:`~pipelines.evaluation`, :mod:`~pipelines.results`, :mod:`~pipelines.tracking`.
README "Where things are" draws the map."""
