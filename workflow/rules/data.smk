# Raw data in: the embedded synthetic dataset and graph preprocessing.


rule generate_synthetic:
    output:
        receipt=f"{ROOT}/synthetic/raw/generator.json",
    log:
        f"{ROOT}/synthetic/logs/generate_synthetic.log",
    conda:
        "../envs/canids.yaml"
    params:
        code=stage_code_digest("generate_synthetic"),
        settings=config["synthetic"],
    script:
        "../scripts/generate_synthetic.py"


rule preprocess:
    input:
        raw=raw_inputs,
    output:
        manifest=f"{ROOT}/{{dataset}}/preprocess/manifest.json",
        train=f"{ROOT}/{{dataset}}/preprocess/graphs/train.pt",
        test=f"{ROOT}/{{dataset}}/preprocess/graphs/test.pt",
    log:
        f"{ROOT}/{{dataset}}/logs/preprocess.log",
    benchmark:
        f"{ROOT}/{{dataset}}/benchmarks/preprocess.tsv"
    conda:
        "../envs/canids.yaml"
    params:
        code=stage_code_digest("preprocess"),
        settings=settings_of("preprocess"),
    script:
        "../scripts/preprocess.py"
