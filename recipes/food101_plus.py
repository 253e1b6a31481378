"""Food-101+ with drkit: the reference work's Food-101 reinforcement and ResNet-50d student.

Cost (printed first; FLOPs counted on the architectures, 40 % MFU on H100s): a ResNet-50d teacher
ensemble labels 100 views of 75,750 images once; each 1000-epoch student then costs what training
it without drkit costs.

    python recipes/food101_plus.py --root /data/food --out runs/food101+
    python recipes/food101_plus.py --dry-run
    python recipes/food101_plus.py --smoke

Reference settings: RandomResizedCrop 224 + flip + RandAugment (m 9) + random erasing (p 0.25); NS
100, top-10; teachers resnet50d fine-tuned from ImageNet weights (SGD lr 0.002, weight decay 5e-4,
1000 epochs); student resnet50d, 1000 epochs, SGD lr 0.2 at batch 256, weight decay 5e-4. drkit
trains the teachers out-of-fold (``--folds 4``), which the reference did not.
"""
from _plan import Plan, main

PLAN = Plan(
    name="Food-101+", data="torchvision:Food101:{root}:train", val="torchvision:Food101:{root}:test",
    train_images=75_750, num_classes=101, teachers=("resnet50d",) * 4,
    recipe="rrc+ra@m=9+re@p=0.25", samples=100,
    finetune={"epochs": 1000, "lr": 0.002, "weight_decay": 5e-4, "folds": 4},
    student="resnet50d", epochs=1000, batch_size=256, lr=0.2, weight_decay=5e-4, warmup_epochs=0,
    note="Add --download to the data commands to let torchvision fetch Food-101.")

if __name__ == "__main__":
    main(PLAN)
