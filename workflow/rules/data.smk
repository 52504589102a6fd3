# Raw data in: the embedded synthetic dataset and graph preprocessing.


rule generate_synthetic:
    output:
        receipt=LAYOUT.generated_receipt("{dataset}"),
    log:
        LAYOUT.log("{dataset}", None, "generate_synthetic"),
    benchmark:
        LAYOUT.benchmark("{dataset}", None, "generate_synthetic")
    conda:
        "../envs/canids.yaml"
    threads: 1
    params:
        code=stage_code_digest("generate_synthetic"),
        settings=to_plain(SETTINGS.synthetic),
    script:
        "../scripts/generate_synthetic.py"


rule preprocess:
    input:
        raw=raw_inputs,
    output:
        **stage_outputs("preprocess"),
    log:
        stage_log("preprocess"),
    benchmark:
        stage_benchmark("preprocess")
    conda:
        "../envs/canids.yaml"
    threads: 2
    params:
        code=stage_code_digest("preprocess"),
        settings=settings_of("preprocess"),
    script:
        "../scripts/stage.py"
