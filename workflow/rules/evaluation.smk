# Evaluation on the official test splits, with figures for `snakemake --report`.


rule evaluation:
    input:
        unpack(stage_inputs("evaluation")),
    output:
        metrics=LAYOUT.file("{dataset}", "{variant}", "evaluation", "metrics", "{run}"),
        manifest=LAYOUT.file(
            "{dataset}", "{variant}", "evaluation", "manifest", "{run}"
        ),
        roc_pr_curves=evaluation_figure("roc_pr_curves", "../report/curves.rst"),
        confusion_matrices=evaluation_figure(
            "confusion_matrices", "../report/confusion.rst"
        ),
        training_curves=evaluation_figure("training_curves", "../report/training.rst"),
    log:
        stage_log("evaluation"),
    benchmark:
        stage_benchmark("evaluation")
    conda:
        "../envs/canids.yaml"
    threads: 2
    params:
        code=stage_code_digest("evaluation"),
    script:
        "../scripts/stage.py"
