"""SchemaProjection: a Schema artifact cut to the named features.

The Evaluator gets the run's schema cut to what it reads (pipeline/evaluation.py): TFMA decodes every
feature its schema names. A component rather than a second ImportSchemaGen: the cut follows whatever
schema the run imported, and its output key differs from ImportSchemaGen's ("schema"), which TFX's
Airflow launcher needs (it names artifacts by output key and run, unique per type)."""

import os

from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types.standard_artifacts import Schema
from tfx.utils import io_utils

from msrec.schemas.schema_gen import SCHEMA_FILE, projection, read_schema, write_schema_proto


@component
def SchemaProjection(schema: InputArtifact[Schema], projected: OutputArtifact[Schema],
                     features: Parameter[str]) -> None:
    """``features``: the names kept, comma-separated; a name the schema lacks fails the run."""
    source = io_utils.get_only_uri_in_dir(schema.uri)
    cut = projection(read_schema(source), [name for name in features.split(",") if name])
    write_schema_proto(cut, os.path.join(projected.uri, SCHEMA_FILE), f"from {os.path.basename(source)}")
