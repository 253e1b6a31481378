"""Flowers-102+ with drkit: the reference work's Flowers-102 reinforcement and ResNet-50d student.

Cost (printed first; FLOPs counted on the architectures, 40 % MFU on H100s): a ResNet-50d teacher
ensemble labels 1000 views of the 1,020 training images once; each 10,000-epoch student (the
reference's long schedule for a small set) then costs what training it without drkit costs.

    python recipes/flowers102_plus.py --root /data/flowers --out runs/flowers102+
    python recipes/flowers102_plus.py --dry-run
    python recipes/flowers102_plus.py --smoke

Reference settings: RandomResizedCrop 224 + flip + RandAugment (m 9) + random erasing (p 0.25); NS
1000, top-10; teachers resnet50d fine-tuned from ImageNet weights (SGD lr 0.002, weight decay 5e-4,
10,000 epochs); student resnet50d, 10,000 epochs, SGD lr 0.2 at batch 256, weight decay 5e-4. drkit
trains the teachers out-of-fold (``--folds 4``), which the reference did not.
"""
from _plan import Plan, main

PLAN = Plan(
    name="Flowers-102+", data="torchvision:Flowers102:{root}:train", val="torchvision:Flowers102:{root}:test",
    train_images=1_020, num_classes=102, teachers=("resnet50d",) * 4,
    recipe="rrc+ra@m=9+re@p=0.25", samples=1000,
    finetune={"epochs": 10_000, "lr": 0.002, "weight_decay": 5e-4, "folds": 4},
    student="resnet50d", epochs=10_000, batch_size=256, lr=0.2, weight_decay=5e-4, warmup_epochs=0,
    note="Add --download to the data commands to let torchvision fetch Flowers-102.")

if __name__ == "__main__":
    main(PLAN)
