import torch

from training.transforms import AugmentConfig, TrainTransforms


def white_square() -> tuple[torch.Tensor, dict]:
    image = torch.zeros(3, 60, 120)
    image[:, 20:40, 50:60] = 1.0
    return image, {
        "boxes": torch.tensor([[50.0, 20.0, 60.0, 40.0]]),
        "labels": torch.tensor([5]),
        "image_id": 7,
    }


def test_affine_moves_boxes_with_the_pixels() -> None:
    torch.manual_seed(0)
    transform = TrainTransforms(
        AugmentConfig(
            brightness=0, contrast=0, saturation=0, affine_degrees=10, affine_translate=0.1, erasing_p=0
        )
    )
    for _ in range(10):
        image, target = transform(*white_square())
        ys, xs = torch.nonzero(image[0] > 0.9, as_tuple=True)
        x1, y1, x2, y2 = target["boxes"][0].tolist()
        assert x1 - 1.5 <= xs.min() and xs.max() + 1 <= x2 + 1.5
        assert y1 - 1.5 <= ys.min() and ys.max() + 1 <= y2 + 1.5
        assert target["labels"].tolist() == [5] and target["image_id"] == 7


def test_seed_transforms_keep_range_and_never_normalise() -> None:
    torch.manual_seed(1)
    transform = TrainTransforms()
    for _ in range(10):
        image, target = transform(*white_square())
        assert image.min() >= 0.0 and image.max() <= 1.0
        assert target["boxes"].shape == (len(target["labels"]), 4)


def test_erasing_fills_with_imagenet_mean() -> None:
    torch.manual_seed(2)
    transform = TrainTransforms(
        AugmentConfig(
            brightness=0, contrast=0, saturation=0, affine_degrees=0, affine_translate=0, erasing_p=1.0
        )
    )
    image, _ = transform(torch.ones(3, 60, 120) * 0.0, white_square()[1])
    erased = image[0] != 0
    assert erased.any()
    assert torch.allclose(image[0][erased], torch.tensor(0.485))


def test_box_pushed_out_of_image_is_dropped_with_its_label() -> None:
    transform = TrainTransforms(
        AugmentConfig(
            brightness=0, contrast=0, saturation=0, affine_degrees=0, affine_translate=0.5, erasing_p=0
        )
    )
    torch.manual_seed(0)
    dropped = 0
    for _ in range(30):
        image = torch.zeros(3, 60, 120)
        _, target = transform(
            image, {"boxes": torch.tensor([[0.0, 0.0, 4.0, 4.0]]), "labels": torch.tensor([1])}
        )
        assert len(target["boxes"]) == len(target["labels"])
        dropped += len(target["labels"]) == 0
    assert dropped > 0
