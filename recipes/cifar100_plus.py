"""CIFAR-100+ with drkit: the reference work's CIFAR-100 reinforcement and ResNet-50d student.

Cost (printed first; FLOPs counted on the architectures, 40 % MFU on H100s): a ResNet-50d teacher
ensemble, fine-tuned at 224 px, labels 100 views of 50,000 images once; each 1000-epoch student
then costs what training it without drkit costs.

    python recipes/cifar100_plus.py --root /data/cifar --out runs/cifar100+
    python recipes/cifar100_plus.py --dry-run
    python recipes/cifar100_plus.py --smoke

Reference settings: images resized to 224 and cropped at 224 with 16 px padding (``padcrop@resize``,
corners in padded output pixels, as the reference records them) + flip + RandAugment (m 9) +
random erasing (p 0.25); NS 100, top-10; teachers resnet50d fine-tuned from ImageNet weights (SGD
lr 0.002, weight decay 5e-4, 1000 epochs); student resnet50d, 1000 epochs, SGD lr 0.2 at batch 256,
weight decay 5e-4. drkit trains the teachers out-of-fold (``--folds 4``: no member labels an image
it was trained on), which the reference did not: a teacher labelling its own training images
gives near one-hot labels (README, "When does dataset reinforcement help?").
"""
from _plan import Plan, main

PLAN = Plan(
    name="CIFAR-100+", data="torchvision:CIFAR100:{root}:train", val="torchvision:CIFAR100:{root}:test",
    train_images=50_000, num_classes=100, teachers=("resnet50d",) * 4,
    recipe="padcrop@resize=224,pad=16+ra@m=9+re@p=0.25", samples=100,
    finetune={"epochs": 1000, "lr": 0.002, "weight_decay": 5e-4, "folds": 4},
    student="resnet50d", epochs=1000, batch_size=256, lr=0.2, weight_decay=5e-4, warmup_epochs=0,
    note="Add --download to the data commands to let torchvision fetch CIFAR-100.")

if __name__ == "__main__":
    main(PLAN)
