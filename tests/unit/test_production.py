"""Production is the model pushed last, found through MLMD lineage, not the newest blessed one."""
from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2
from tfx.dsl.input_resolution.strategies.latest_blessed_model_strategy import LatestBlessedModelStrategy
from tfx.types import standard_artifacts

from msrec.pipeline.production import LatestPushedModelStrategy


class Store:
    """A real in-memory MLMD store with helpers to record executions as the pipeline does."""

    def __init__(self):
        config = metadata_store_pb2.ConnectionConfig()
        config.fake_database.SetInParent()
        self.mlmd = metadata_store.MetadataStore(config)

    def artifact(self, cls, **int_props):
        a = cls()
        a.type_id = self.mlmd.put_artifact_type(a.artifact_type)
        for k, v in int_props.items():
            a.set_int_custom_property(k, v)
        [a.id] = self.mlmd.put_artifacts([a.mlmd_artifact])
        return a

    def execution(self, name, inputs, outputs):
        type_id = self.mlmd.put_execution_type(metadata_store_pb2.ExecutionType(name=name))
        [eid] = self.mlmd.put_executions([metadata_store_pb2.Execution(type_id=type_id)])
        events = []
        for kind, artifacts in ((metadata_store_pb2.Event.INPUT, inputs), (metadata_store_pb2.Event.OUTPUT, outputs)):
            for key, a in artifacts.items():
                e = metadata_store_pb2.Event(artifact_id=a.id, execution_id=eid, type=kind)
                e.path.steps.add().key = key
                e.path.steps.add().index = 0
                events.append(e)
        self.mlmd.put_events(events)

    def train_and_bless(self, blessed):
        model = self.artifact(standard_artifacts.Model)
        self.execution("Trainer", {}, {"model": model})
        blessing = self.artifact(standard_artifacts.ModelBlessing, blessed=int(blessed), current_model_id=model.id)
        self.execution("ScenarioBlessing", {"model": model}, {"scenario_blessing": blessing})
        return model, blessing

    def push(self, model, blessing):
        pushed = self.artifact(standard_artifacts.PushedModel, pushed=blessing.get_int_custom_property("blessed"))
        self.execution("AtomicPusher", {"model": model, "model_blessing": blessing}, {"pushed_model": pushed})
        return pushed


def test_a_blessed_model_that_was_never_pushed_is_not_production():
    s = Store()
    served, served_blessing = s.train_and_bless(blessed=True)
    first_push = s.push(served, served_blessing)
    rejected, rejected_blessing = s.train_and_bless(blessed=False)
    not_pushed = s.push(rejected, rejected_blessing)
    crashed, crashed_blessing = s.train_and_bless(blessed=True)  # the run died before its push
    models = [served, rejected, crashed]

    resolved = LatestPushedModelStrategy().resolve_artifacts(
        s.mlmd, {"model": list(models), "pushed_model": [first_push, not_pushed]})
    assert [m.id for m in resolved["model"]] == [served.id]
    assert [p.id for p in resolved["pushed_model"]] == [first_push.id]
    # the strategy this one replaces would have picked the model that never served
    blessed = LatestBlessedModelStrategy().resolve_artifacts(
        s.mlmd, {"model": list(models), "model_blessing": [served_blessing, rejected_blessing, crashed_blessing]})
    assert [m.id for m in blessed["model"]] == [crashed.id]


def test_the_newest_push_wins_and_nothing_resolves_before_the_first():
    s = Store()
    first, first_blessing = s.train_and_bless(blessed=True)
    assert LatestPushedModelStrategy().resolve_artifacts(s.mlmd, {"model": [first], "pushed_model": []}) == \
        {"model": [], "pushed_model": []}
    p1 = s.push(first, first_blessing)
    second, second_blessing = s.train_and_bless(blessed=True)
    p2 = s.push(second, second_blessing)
    resolved = LatestPushedModelStrategy().resolve_artifacts(
        s.mlmd, {"model": [first, second], "pushed_model": [p2, p1]})
    assert [m.id for m in resolved["model"]] == [second.id]
