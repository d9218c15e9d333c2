"""Reading learned prompts as words, and loading prompts saved by the original (Dassl) trainers."""

import sys
import types

import pandas as pd
import pytest
import torch

from promptinfo import create_method
from promptinfo.errors import CheckpointMismatchError
from promptinfo.methods.original import load_original_prompt
from promptinfo.methods.words import nearest_words, text_context_vectors

CLASSES = ["cat", "dog", "bird"]


def test_context_initialised_from_words_reads_back_as_those_words(tiny_backbone):
    method = create_method("coop", tiny_backbone, CLASSES, ctx_init="a photo of a")
    rows = nearest_words(method, k=3)
    assert [r.euclidean[0][0] for r in rows] == ["a", "photo", "of", "a"]
    assert all(r.euclidean[0][1] == pytest.approx(0.0, abs=1e-5) for r in rows)
    assert all(r.cosine[0][0] == r.euclidean[0][0] and r.cosine[0][1] == pytest.approx(1.0, abs=1e-5) for r in rows)
    assert [(r.tensor, r.layer, r.position, r.classname) for r in rows] == [("ctx", 0, p, None) for p in range(4)]
    for r in rows:  # ranked: distances ascend, similarities descend
        assert [d for _, d in r.euclidean] == sorted(d for _, d in r.euclidean)
        assert [s for _, s in r.cosine] == sorted((s for _, s in r.cosine), reverse=True)


def test_nearest_words_match_a_direct_search(tiny_backbone):
    method = create_method("coop", tiny_backbone, CLASSES, n_ctx=2)
    vocab, texts = tiny_backbone.vocabulary()
    ctx = method.prompt.ctx.detach().float()
    dist = ((ctx[:, None, :] - vocab.float()[None]) ** 2).sum(-1).sqrt()  # [2, V]
    rows = nearest_words(method, k=4)
    for p, row in enumerate(rows):
        expected = dist[p].argsort()[:4].tolist()
        assert [t for t, _ in row.euclidean] == [texts[i] for i in expected]
        assert [d for _, d in row.euclidean] == pytest.approx(dist[p, expected].tolist(), rel=1e-4)


def test_class_specific_and_deep_text_prompts_are_read(tiny_backbone):
    csc = nearest_words(create_method("coop", tiny_backbone, CLASSES, n_ctx=2, csc=True), k=1)
    assert [(r.classname, r.position) for r in csc] == [(c, p) for c in CLASSES for p in range(2)]
    maple = create_method("maple", tiny_backbone, CLASSES, depth=3)
    assert {k: layer for k, (layer, _) in text_context_vectors(maple).items()} == {
        "ctx": 0, "compound_prompts_text.0": 1, "compound_prompts_text.1": 2}
    ivlp = create_method("ivlp", tiny_backbone, CLASSES, depth_text=2, depth_vision=2)
    assert sorted(text_context_vectors(ivlp)) == ["ctx", "deep_text.0"]  # vision prompts are not words


def test_methods_without_text_context_are_refused(tiny_backbone):
    with pytest.raises(ValueError, match="no text context"):
        nearest_words(create_method("vpt", tiny_backbone, CLASSES, depth_vision=2))


# ------------------------------------------------------------------------------ original checkpoints
def _dassl_checkpoint(path, state_dict):
    """A checkpoint as Dassl's save_checkpoint writes it, with a warm-up scheduler object that pickles
    its successor (module `dassl` exists only while saving, as in the original environment)."""
    module = types.ModuleType("dassl.optim.lr_scheduler")

    class ConstantWarmupScheduler:
        pass

    ConstantWarmupScheduler.__module__ = module.__name__
    module.ConstantWarmupScheduler = ConstantWarmupScheduler
    optim = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.002)
    sched = ConstantWarmupScheduler()
    sched.successor = torch.optim.lr_scheduler.CosineAnnealingLR(optim, T_max=50)
    sched.last_epoch = 3
    names = ["dassl", "dassl.optim", "dassl.optim.lr_scheduler"]
    sys.modules.update({n: module for n in names})
    try:
        torch.save({"state_dict": state_dict, "epoch": 50, "optimizer": optim.state_dict(),
                    "scheduler": {k: v for k, v in sched.__dict__.items()}, "val_result": 71.5}, path)
    finally:
        for n in names:
            sys.modules.pop(n)


def test_original_coop_checkpoint_loads_exactly(tiny_backbone, tmp_path):
    source = create_method("coop", tiny_backbone, CLASSES, n_ctx=4)
    state = {"ctx": source.prompt.ctx.detach().half(), "token_prefix": torch.zeros(3, 1, 48),
             "token_suffix": torch.zeros(3, 10, 48)}
    _dassl_checkpoint(tmp_path / "model.pth.tar-50", state)
    target = create_method("coop", tiny_backbone, CLASSES, n_ctx=4)
    load_original_prompt(target, tmp_path / "model.pth.tar-50")
    assert torch.equal(target.prompt.ctx, source.prompt.ctx.detach().half().float())


def test_original_maple_whole_model_checkpoint_loads(tiny_backbone, tmp_path):
    source = create_method("maple", tiny_backbone, CLASSES, depth=2)
    with torch.no_grad():  # trained prompts: away from their initialisation
        for p in source.prompt.parameters():
            p.add_(0.1 * torch.randn_like(p))
    state = {f"prompt_learner.{k}": v.clone() for k, v in source.prompt.state_dict().items()}
    state.update({"prompt_learner.token_prefix": torch.zeros(3, 1, 48), "image_encoder.conv1.weight": torch.ones(2),
                  "logit_scale": torch.tensor(4.6)})
    _dassl_checkpoint(tmp_path / "model-best.pth.tar", state)
    target = create_method("maple", tiny_backbone, CLASSES, depth=2)
    load_original_prompt(target, tmp_path / "model-best.pth.tar")
    for k, v in source.prompt.state_dict().items():
        assert torch.equal(target.prompt.state_dict()[k], v), k
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(target(x), source(x), rtol=0, atol=0)


def test_original_checkpoint_of_another_shape_or_method_is_refused(tiny_backbone, tmp_path):
    source = create_method("coop", tiny_backbone, CLASSES, n_ctx=16)
    torch.save({"state_dict": {"ctx": source.prompt.ctx.detach()}}, tmp_path / "coop16.pth")
    with pytest.raises(CheckpointMismatchError, match=r"ctx: \(16, 48\) in the file, \(4, 48\) here.*n_ctx"):
        load_original_prompt(create_method("coop", tiny_backbone, CLASSES, n_ctx=4), tmp_path / "coop16.pth")
    with pytest.raises(CheckpointMismatchError, match=r"does not hold cocoop prompts.*missing \['meta_net"):
        load_original_prompt(create_method("cocoop", tiny_backbone, CLASSES), tmp_path / "coop16.pth")
    maple2 = create_method("maple", tiny_backbone, CLASSES, depth=2, n_ctx=2)
    path = tmp_path / "maple.pth"
    torch.save({"state_dict": {f"prompt_learner.{k}": v for k, v in maple2.prompt.state_dict().items()}}, path)
    with pytest.raises(CheckpointMismatchError) as err:
        load_original_prompt(create_method("maple", tiny_backbone, CLASSES, depth=2, n_ctx=4), path)
    assert str(err.value) == (
        f"{path} does not fit this maple configuration (ctx: (2, 48) in the file, (4, 48) here, "
        "compound_prompts_text.0: (2, 48) in the file, (4, 48) here). Set the options it was trained with (n_ctx / "
        "ctx_init for the context length, depth for deep prompts, csc for class-specific contexts) and the same "
        "backbone (the width is the text encoder's).")


@pytest.mark.parametrize("force_old_default", [False, True])
def test_original_checkpoint_with_code_is_refused_without_running_it(force_old_default, tmp_path, capsys,
                                                                     monkeypatch):
    class Payload:
        def __reduce__(self):
            return (print, ("executed",))

    import pickle

    if force_old_default:  # torch's switch back to unpickling anything, where the caller does not say
        monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    path = tmp_path / "evil.pth"
    path.write_bytes(pickle.dumps({"state_dict": Payload()}, protocol=2))
    with pytest.raises(CheckpointMismatchError) as err:
        load_original_prompt(None, path)
    assert "executed" not in capsys.readouterr().out
    message = str(err.value)
    assert message.startswith(f"{path} cannot be read as an original CoOp/CoCoOp/MaPLe checkpoint without running "
                              "code from it (Weights only load failed. ")  # the first line of torch's reason
    assert message.endswith("). In the original code's environment, save the state dict alone: "
                            "torch.save(torch.load(path)['state_dict'], 'prompt_learner.pth'), and load that file.")
    with pytest.raises(CheckpointMismatchError, match="No checkpoint"):
        load_original_prompt(None, tmp_path / "missing.pth")


@pytest.mark.parametrize("saved", [torch.zeros(3), {"state_dict": {"ctx": [0.0, 1.0]}}, {"ctx": "a photo of a"}],
                         ids=["a tensor", "lists", "words"])
def test_original_checkpoint_without_a_state_dict_of_tensors_is_refused(saved, tmp_path):
    path = tmp_path / "model.pth.tar-50"
    torch.save(saved, path)
    with pytest.raises(CheckpointMismatchError) as err:
        load_original_prompt(None, path)
    assert str(err.value) == f"{path} holds no state dict of tensors (a Dassl checkpoint has 'state_dict')."


def test_original_state_dict_saved_alone_or_on_a_gpu_loads(tiny_backbone, tmp_path, monkeypatch):
    source = create_method("coop", tiny_backbone, CLASSES, n_ctx=4, init_std=0.5)
    torch.save({"ctx": source.prompt.ctx.detach()}, tmp_path / "prompt_learner.pth")  # as the refusal advises
    target = create_method("coop", tiny_backbone, CLASSES, n_ctx=4)
    load_original_prompt(target, tmp_path / "prompt_learner.pth")
    assert torch.equal(target.prompt.ctx, source.prompt.ctx)
    with monkeypatch.context() as patch:  # the original trainers ran on CUDA: the file names that device
        patch.setattr(torch.serialization, "location_tag", lambda storage: "cuda:0")
        torch.save({"state_dict": {"ctx": source.prompt.ctx.detach() * 2}}, tmp_path / "model.pth.tar-50")
    load_original_prompt(target, tmp_path / "model.pth.tar-50")  # read onto the CPU, with or without a GPU
    assert torch.equal(target.prompt.ctx, source.prompt.ctx * 2)


def test_original_checkpoint_loads_into_promptsrc_whose_aggregation_state_is_not_a_prompt(tiny_backbone, tmp_path):
    options = dict(depth_text=2, depth_vision=2)
    source = create_method("promptsrc", tiny_backbone, CLASSES, init_std=0.5, **options)
    learned = {k: v for k, v in source.prompt.state_dict().items() if not k.startswith("gpa_")}
    assert sorted(learned) == ["ctx", "deep_text.0", "deep_vision.0", "vision_ctx"]
    torch.save({"state_dict": learned}, tmp_path / "model.pth.tar-20")
    target = create_method("promptsrc", tiny_backbone, CLASSES, **options)
    aggregation = {k: v.clone() for k, v in target.prompt.state_dict().items() if k.startswith("gpa_")}
    assert load_original_prompt(target, tmp_path / "model.pth.tar-20").keys() == learned.keys()
    for k, v in target.prompt.state_dict().items():
        assert torch.equal(v, learned[k] if k in learned else aggregation[k]), k


# ------------------------------------------------------------------------------ sharing prompts
def _trained_prompt(backbone, folder, method="coop", **options):
    from promptinfo.methods import save_prompt

    m = create_method(method, backbone, CLASSES, dataset_templates=["a photo of a {}, a type of pet."], **options)
    with torch.no_grad():
        for p in m.prompt.parameters():
            p.add_(0.05 * torch.randn_like(p))
    folder.mkdir(parents=True, exist_ok=True)
    save_prompt(m, folder / "prompt.safetensors", extra={"dataset": "oxford_pets", "protocol": "few_shot",
                                                         "shots": 16, "seed": 1, "epochs": 200, "experiment": None})
    return m


def test_export_writes_a_prompt_with_results_and_a_card_that_loads_back(tiny_backbone, tmp_path):
    import json

    from promptinfo.methods import load_method, read_prompt_checkpoint
    from promptinfo.report.card import export_prompt

    run = tmp_path / "run"
    original = _trained_prompt(tiny_backbone, run, n_ctx=3)
    (run / "results.json").write_text(json.dumps({"status": "finished", "evaluations": {
        "oxford_pets": {"dataset": "oxford_pets", "correct": 7, "total": 9, "accuracy": 77.78}}}))
    exported = export_prompt(run, tmp_path / "shared")
    _, meta = read_prompt_checkpoint(exported.prompt)
    assert meta["results"] == {"oxford_pets": 77.78}
    assert meta["templates"] == ["a photo of a {}, a type of pet."] and meta["config"]["n_ctx"] == 3
    card = exported.card.read_text()
    for text in ("# coop prompt for pi-tiny-vit-s", "oxford_pets", "| oxford_pets | 77.78 |", "cat, dog, bird",
                 "promptinfo.load_method", "pretrained=None", "Transfers to other classes**: yes"):
        assert text in card, text
    loaded = load_method(exported.prompt, tiny_backbone)
    assert loaded.classnames == CLASSES and loaded.dataset_templates == ["a photo of a {}, a type of pet."]
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(loaded(x), original.eval()(x), rtol=0, atol=0)
    other = load_method(exported.prompt, tiny_backbone, classnames=["bus", "tulip"])  # transferable
    assert other(x).shape == (2, 2)


def test_loading_on_another_backbone_says_what_to_pass(tiny_backbone, tmp_path):
    from tests.conftest import make_backbone
    from promptinfo.methods import load_method

    _trained_prompt(tiny_backbone, tmp_path, n_ctx=3)
    with pytest.raises(CheckpointMismatchError, match=r"load it with torch.manual_seed\(0\); create_backbone\('pi-tiny-vit-s', pretrained=None\)"):
        load_method(tmp_path / "prompt.safetensors", make_backbone("pi-tiny-vit-m"))
    _trained_prompt(tiny_backbone, tmp_path / "csc", n_ctx=2, csc=True)
    with pytest.raises(CheckpointMismatchError, match="class-specific prompts for 3 classes"):
        load_method(tmp_path / "csc" / "prompt.safetensors", tiny_backbone, classnames=["bus", "tulip"])


# ------------------------------------------------------------------------------ prompt files: weights and fit
@pytest.fixture
def weights_files(tmp_path, monkeypatch):
    """Two files of other tiny weights, and a registered tag `prompt-test` serving the first (until the test ends)."""
    import promptinfo.backbones.weights as weights_registry
    from promptinfo.backbones import register_weights
    from tests.conftest import make_backbone

    files = []
    for seed in (3, 4):
        files.append(tmp_path / f"tiny{seed}.pt")
        torch.save(make_backbone(seed=seed).model.state_dict(), files[-1])
    monkeypatch.setattr(weights_registry, "_TAGS", dict(weights_registry._TAGS))
    register_weights("prompt-test", ["pi-tiny-vit-s"], lambda name, cache_dir: files[0])
    return files


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "promptinfo.methods.prompt_file"]


def test_a_prompt_file_records_the_weights_content_and_warns_when_a_tag_now_holds_other_weights(
        weights_files, tmp_path, caplog, monkeypatch):
    import logging

    from promptinfo import create_backbone
    from promptinfo.backbones import register_weights
    from promptinfo.methods import load_prompt, read_prompt_checkpoint, save_prompt

    tagged = create_backbone("pi-tiny-vit-s", pretrained="prompt-test")
    digest = tagged.weights_digest
    assert digest.startswith("file-") and tagged.weights_id == "prompt-test"
    path = tmp_path / "prompt.safetensors"
    save_prompt(create_method("coop", tagged, CLASSES, n_ctx=2), path)
    meta = read_prompt_checkpoint(path)[1]
    assert (meta["weights"], meta["weights_digest"]) == ("prompt-test", digest)
    with caplog.at_level(logging.WARNING, logger="promptinfo.methods.prompt_file"):
        load_prompt(create_method("coop", create_backbone("pi-tiny-vit-s", pretrained="prompt-test"), CLASSES,
                                  n_ctx=2), path)  # the same tag, the same content: nothing to say
        assert _warnings(caplog) == []
        register_weights("prompt-test", ["pi-tiny-vit-s"], lambda name, cache_dir: weights_files[1])
        other = create_backbone("pi-tiny-vit-s", pretrained="prompt-test")
        load_prompt(create_method("coop", other, CLASSES, n_ctx=2), path)  # loads, with a warning
    assert _warnings(caplog) == [
        f"{path} was trained on pi-tiny-vit-s weights 'prompt-test' with content {digest}; the weights under that "
        f"tag here are {other.weights_digest} (e.g. the demo CLIP pretrained by another recipe or CPU): expect "
        "other numbers."]
    assert other.weights_digest.startswith("file-") and other.weights_digest != digest


def test_a_prompt_file_without_a_weights_digest_is_read_as_of_its_tag(tiny_backbone, tmp_path, caplog):
    import json
    import logging

    from safetensors.torch import save_file

    from promptinfo.methods import load_prompt
    from promptinfo.methods.prompt_file import prompt_metadata

    method = create_method("coop", tiny_backbone, CLASSES, n_ctx=2)
    meta = prompt_metadata(method)
    del meta["weights_digest"]  # written before the digest was recorded
    path = tmp_path / "prompt.safetensors"
    save_file({"ctx": method.prompt.ctx.detach()}, str(path), metadata={"promptinfo": json.dumps(meta)})
    fresh = create_method("coop", tiny_backbone, CLASSES, n_ctx=2, init_std=0.5)
    with caplog.at_level(logging.WARNING, logger="promptinfo.methods.prompt_file"):
        load_prompt(fresh, path)
    assert _warnings(caplog) == [] and torch.equal(fresh.prompt.ctx, method.prompt.ctx)


def test_loading_on_other_weights_says_how_to_build_them(weights_files, tiny_backbone, tmp_path):
    from promptinfo import create_backbone
    from promptinfo.methods import load_prompt, save_prompt

    for pretrained, build in [
        (str(weights_files[0]), "create_backbone('pi-tiny-vit-s', pretrained='/path/to/weights') with the weights "
                                "file it was trained on (fingerprint {weights})"),
        ("prompt-test", "create_backbone('pi-tiny-vit-s', pretrained='prompt-test')"),
    ]:
        backbone = create_backbone("pi-tiny-vit-s", pretrained=pretrained)
        path = tmp_path / "prompt.safetensors"
        save_prompt(create_method("coop", backbone, CLASSES, n_ctx=2), path)
        with pytest.raises(CheckpointMismatchError) as err:
            load_prompt(create_method("coop", tiny_backbone, CLASSES, n_ctx=2), path)
        weights = backbone.weights_id
        assert str(err.value) == (
            f"{path} was trained on backbone pi-tiny-vit-s (weights {weights}); this method runs on pi-tiny-vit-s "
            f"(weights random). Prompts do not transfer between backbones: load it with {build.format(weights=weights)}.")


def test_a_prompt_file_of_another_method_classes_or_tensors_is_refused(tiny_backbone, tmp_path):
    import json

    from safetensors import safe_open
    from safetensors.torch import save_file

    from promptinfo.methods import load_prompt, save_prompt

    path = tmp_path / "prompt.safetensors"
    save_prompt(create_method("coop", tiny_backbone, CLASSES, n_ctx=2), path)
    with pytest.raises(CheckpointMismatchError) as err:
        load_prompt(create_method("maple", tiny_backbone, CLASSES, depth=2), path)
    assert str(err.value) == f"{path} holds coop prompts, not maple."

    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata()
    save_file({"ctx": torch.zeros(2, 48), "ctx_bias": torch.zeros(48)}, str(path), metadata=metadata)  # one more
    with pytest.raises(CheckpointMismatchError) as err:
        load_prompt(create_method("coop", tiny_backbone, CLASSES, n_ctx=2), path)
    config = json.loads(metadata["promptinfo"])["config"]
    message = str(err.value)
    assert message.startswith(f"{path} does not fit this coop configuration: Error(s) in loading state_dict")
    assert 'Unexpected key(s) in state_dict: "ctx_bias"' in message
    assert message.endswith(f". It was saved with {config}.")

    five, four = ["cat", "dog", "bird", "fish", "cow"], ["bus", "tulip", "car", "owl"]
    save_prompt(create_method("coop", tiny_backbone, five, n_ctx=2, csc=True), path)
    with pytest.raises(CheckpointMismatchError) as err:
        load_prompt(create_method("coop", tiny_backbone, four, n_ctx=2, csc=True), path)
    assert str(err.value) == (
        f"{path} holds class-specific prompts for 5 classes (['cat', 'dog', 'bird']...), which cannot be used for "
        "the 4 classes here (['bus', 'tulip', 'car']...).")


def test_export_refuses_what_is_not_a_run(tmp_path):
    from promptinfo.report.card import ExportError, export_prompt

    with pytest.raises(ExportError, match="neither a run folder"):
        export_prompt(tmp_path, tmp_path / "out")


def test_words_table_lists_every_vector_and_every_rank(tiny_backbone):
    from promptinfo.report.formats import to_markdown
    from promptinfo.report.words import words_table

    method = create_method("maple", tiny_backbone, CLASSES, depth=2)
    rows = nearest_words(method, k=3)
    table = words_table(rows, "maple", k=2)
    assert len(table.display) == len(rows) == 4  # ctx (2 tokens) + one deep text prompt (2 tokens)
    assert len(table.data) == 4 * 3 and list(table.data["rank"][:3]) == [1, 2, 3]
    markdown = to_markdown(table)
    assert "| ctx | 0 | 0 |  | a (0.00)," in markdown and "compound_prompts_text.0 | 1 |" in markdown


def test_inspect_reads_a_checkpoints_words_from_the_command_line(tmp_path, capsys):
    from promptinfo.cli.inspect import main
    from promptinfo.methods import save_prompt
    from tests.conftest import make_backbone

    backbone = make_backbone("pi-tiny-vit-s", seed=0)  # the engine rebuilds random weights from seed 0
    save_prompt(create_method("coop", backbone, CLASSES, ctx_init="a photo of a"), tmp_path / "prompt.safetensors")
    assert main(["--checkpoint", str(tmp_path / "prompt.safetensors"), "--words", "3", "--out", str(tmp_path / "w")]) == 0
    frame = pd.read_csv(tmp_path / "w" / "words.csv")
    assert len(frame) == 4 * 3 and list(frame[frame["rank"] == 1]["euclidean_token"]) == ["a", "photo", "of", "a"]
    assert "Nearest words of the coop prompt" in capsys.readouterr().out
    save_prompt(create_method("vpt", backbone, CLASSES, depth_vision=2), tmp_path / "vpt.safetensors")
    assert main(["--checkpoint", str(tmp_path / "vpt.safetensors"), "--out", str(tmp_path / "v")]) == 2
    assert "learns no text context" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["--out", str(tmp_path / "x")])
    assert exit_info.value.code == 2
    assert "--model, --datasets, --data-root (or --checkpoint" in capsys.readouterr().err
