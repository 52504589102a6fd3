# Evaluation on the official test splits, with figures for `snakemake --report`.


rule evaluation:
    input:
        preprocess=upstream("preprocess"),
        autoencoder=upstream("autoencoder"),
        curriculum=upstream("curriculum"),
        fusion=upstream("fusion"),
        fusion_ckpt=upstream("fusion", "checkpoint"),
    output:
        metrics=f"{ROOT}/{{dataset}}/{{variant}}/evaluation/metrics.json",
        manifest=f"{ROOT}/{{dataset}}/{{variant}}/evaluation/manifest.json",
        curves=report(
            f"{ROOT}/{{dataset}}/{{variant}}/evaluation/roc_pr_curves.png",
            category="{dataset}",
            subcategory="{variant}",
            caption="../report/curves.rst",
        ),
        confusion=report(
            f"{ROOT}/{{dataset}}/{{variant}}/evaluation/confusion_matrices.png",
            category="{dataset}",
            subcategory="{variant}",
            caption="../report/confusion.rst",
        ),
        training=report(
            f"{ROOT}/{{dataset}}/{{variant}}/evaluation/training_curves.png",
            category="{dataset}",
            subcategory="{variant}",
            caption="../report/training.rst",
        ),
    log:
        f"{ROOT}/{{dataset}}/logs/{{variant}}/evaluation.log",
    benchmark:
        f"{ROOT}/{{dataset}}/benchmarks/{{variant}}/evaluation.tsv"
    conda:
        "../envs/canids.yaml"
    params:
        code=stage_code_digest("evaluation"),
    script:
        "../scripts/evaluation.py"
