"""ImageNet+ with drkit: the reference work's ImageNet reinforcement and ResNet-50d student.

Cost (printed first; FLOPs counted on the architectures, 40 % MFU on H100s): three IG-ResNeXt-101
teachers label 50 views of 1.28 M images once; the store holds 64 M records; each 150-epoch
ResNet-50d student then costs what training it without drkit costs.

    python recipes/imagenet_plus.py --root /data/imagenet --out runs/imagenet+   # the full run
    python recipes/imagenet_plus.py --dry-run                                     # the estimate and commands
    python recipes/imagenet_plus.py --smoke                                       # the same commands, tiny (~1 min)

Reference settings: teachers resnext101_32x{8,16,32,48}d (Instagram-1B pretrained, ImageNet
fine-tuned) averaged (timm has the first three; the 32x48d model is not in timm, so this plan
averages three: put the fourth into a drkit checkpoint and add ``--teacher ckpt:DIR`` to match); NS 50, top-10; RandomResizedCrop 224 + flip + RandAugment (2 ops, m 9) +
random erasing (p 0.25) + MixUp/CutMix; student resnet50d, 150 epochs, SGD lr 0.4 at batch 1024,
weight decay 1e-4, 5 warm-up epochs, 1 % of samples the plain image. drkit's ``mix`` applies MixUp
or CutMix to a view (p 0.75, half each), where the reference applies each with p 0.5, sometimes both.
"""
from _plan import Plan, main

PLAN = Plan(
    name="ImageNet+", data="imagefolder:{root}:train", val="imagefolder:{root}:val", train_images=1_281_167,
    num_classes=1000,
    teachers=("resnext101_32x8d.fb_wsl_ig1b_ft_in1k", "resnext101_32x16d.fb_wsl_ig1b_ft_in1k",
              "resnext101_32x32d.fb_wsl_ig1b_ft_in1k"),
    recipe="rrc+ra@m=9+re@p=0.25+mix@p=0.75,mixup=1.0,cutmix=1.0,switch=0.5", samples=50,
    student="resnet50d", epochs=150, batch_size=1024, lr=0.4, weight_decay=1e-4, warmup_epochs=5,
    note="Teachers come pretrained from the Hugging Face hub through timm.")

if __name__ == "__main__":
    main(PLAN)
