"""Template-built text sides follow the dataset's templates unless the config names its own."""

import pytest
import torch

from promptinfo.methods import create_method
from promptinfo.methods.prompt_file import prompt_metadata
from promptinfo.methods.zeroshot import zeroshot_classifier

NAMES = ["abyssinian", "beagle", "sphynx"]
PETS = ["a photo of a {}, a type of pet."]
TEXTURES = ["{} texture."]


def test_zeroshot_uses_dataset_templates_then_follows_class_swaps(tiny_backbone):
    method = create_method("zeroshot", tiny_backbone, NAMES, dataset_templates=PETS)
    assert torch.equal(method.text_features(), zeroshot_classifier(tiny_backbone, NAMES, PETS))
    method.set_classnames(["banded", "woven"], TEXTURES)
    assert torch.equal(method.text_features(), zeroshot_classifier(tiny_backbone, ["banded", "woven"], TEXTURES))
    method.set_classnames(["dotted"])  # no templates given: keep the last dataset's
    assert torch.equal(method.text_features(), zeroshot_classifier(tiny_backbone, ["dotted"], TEXTURES))


def test_configured_templates_win_and_default_without_dataset(tiny_backbone):
    own = ["a drawing of a {}."]
    method = create_method("zeroshot", tiny_backbone, NAMES, dataset_templates=PETS, templates=own)
    assert torch.equal(method.text_features(), zeroshot_classifier(tiny_backbone, NAMES, own))
    bare = create_method("zeroshot", tiny_backbone, NAMES)
    assert torch.equal(bare.text_features(), zeroshot_classifier(tiny_backbone, NAMES, ["a photo of a {}."]))


def test_kgcoop_frozen_features_use_the_dataset_template(tiny_backbone):
    method = create_method("kgcoop", tiny_backbone, NAMES, dataset_templates=PETS)
    assert torch.equal(method.frozen_text, zeroshot_classifier(tiny_backbone, NAMES, PETS))


def test_bad_dataset_templates_are_rejected(tiny_backbone):
    with pytest.raises(ValueError, match="'\\{\\}' once"):
        create_method("zeroshot", tiny_backbone, NAMES, dataset_templates=["no placeholder"])


SHALLOW = {"cocoop": {}, "maple": dict(depth=1), "ivlp": dict(depth_text=1, depth_vision=1),
           "promptsrc": dict(depth_text=1, depth_vision=1), "vpt": dict(depth_vision=1)}


@pytest.mark.parametrize("name", sorted(SHALLOW))
def test_learned_prompt_methods_keep_the_dataset_templates(tiny_backbone, name):
    """Recorded in prompt files and read by template-built loss terms (loss=kg) of any method."""
    method = create_method(name, tiny_backbone, NAMES, dataset_templates=PETS, **SHALLOW[name])
    assert method.templates_for(None) == PETS
    assert prompt_metadata(method)["templates"] == PETS
