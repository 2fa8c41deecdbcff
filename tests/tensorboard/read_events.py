"""Reads a gda run's tb/ folder with TensorBoard's own readers and prints
what they see as JSON, for tests/tensorboard.rs to compare with metrics.csv.

Two readers: the classic EventAccumulator, and the plugin_event_accumulator
that `tensorboard --logdir` serves the Scalars and Text dashboards from
(with --load_fast=false), which migrates simple_value scalars to tensors.
Both keep every event (size guidance 0) and purge orphaned data (the
default), so a SessionLog START drops the steps a resumed run logs again.
"""
import json
import sys

from tensorboard.backend.event_processing import event_accumulator as ea
from tensorboard.backend.event_processing import plugin_event_accumulator as pea
from tensorboard.util import tensor_util

path = sys.argv[1]

classic = ea.EventAccumulator(path, size_guidance={ea.SCALARS: 0, ea.TENSORS: 0})
classic.Reload()
plugin = pea.EventAccumulator(path, size_guidance={pea.TENSORS: 0})
plugin.Reload()

out = {"scalars": {}, "plugin_scalars": {}, "texts": {}}
for tag in classic.Tags()["scalars"]:
    out["scalars"][tag] = [[e.step, e.value] for e in classic.Scalars(tag)]
for tag in plugin.PluginTagToContent("scalars"):
    out["plugin_scalars"][tag] = [
        [e.step, float(tensor_util.make_ndarray(e.tensor_proto).item())] for e in plugin.Tensors(tag)
    ]
for tag in plugin.PluginTagToContent("text"):
    out["texts"][tag] = [
        [e.step, tensor_util.make_ndarray(e.tensor_proto).item().decode()] for e in plugin.Tensors(tag)
    ]
print(json.dumps(out))
