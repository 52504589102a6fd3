# The three chained training stages. Resources come from the profile, not from here.


rule autoencoder:
    input:
        preprocess=upstream("preprocess"),
        teacher=teacher_of("autoencoder"),
    output:
        ckpt=f"{ROOT}/{{dataset}}/{{variant}}/autoencoder/model.ckpt",
        manifest=f"{ROOT}/{{dataset}}/{{variant}}/autoencoder/manifest.json",
    log:
        f"{ROOT}/{{dataset}}/logs/{{variant}}/autoencoder.log",
    benchmark:
        f"{ROOT}/{{dataset}}/benchmarks/{{variant}}/autoencoder.tsv"
    conda:
        "../envs/canids.yaml"
    params:
        code=stage_code_digest("autoencoder"),
        settings=settings_of("autoencoder"),
        resume_dir=f"{ROOT}/.resume/{{dataset}}/{{variant}}/autoencoder",
    script:
        "../scripts/autoencoder.py"


rule curriculum:
    input:
        preprocess=upstream("preprocess"),
        autoencoder=upstream("autoencoder"),
        autoencoder_ckpt=upstream("autoencoder", "checkpoint"),
        teacher=teacher_of("curriculum"),
    output:
        ckpt=f"{ROOT}/{{dataset}}/{{variant}}/curriculum/model.ckpt",
        manifest=f"{ROOT}/{{dataset}}/{{variant}}/curriculum/manifest.json",
    log:
        f"{ROOT}/{{dataset}}/logs/{{variant}}/curriculum.log",
    benchmark:
        f"{ROOT}/{{dataset}}/benchmarks/{{variant}}/curriculum.tsv"
    conda:
        "../envs/canids.yaml"
    params:
        code=stage_code_digest("curriculum"),
        settings=settings_of("curriculum"),
        resume_dir=f"{ROOT}/.resume/{{dataset}}/{{variant}}/curriculum",
    script:
        "../scripts/curriculum.py"


rule fusion:
    input:
        preprocess=upstream("preprocess"),
        autoencoder=upstream("autoencoder"),
        autoencoder_ckpt=upstream("autoencoder", "checkpoint"),
        curriculum=upstream("curriculum"),
        curriculum_ckpt=upstream("curriculum", "checkpoint"),
        teacher=teacher_of("fusion"),
    output:
        ckpt=f"{ROOT}/{{dataset}}/{{variant}}/fusion/model.ckpt",
        manifest=f"{ROOT}/{{dataset}}/{{variant}}/fusion/manifest.json",
    log:
        f"{ROOT}/{{dataset}}/logs/{{variant}}/fusion.log",
    benchmark:
        f"{ROOT}/{{dataset}}/benchmarks/{{variant}}/fusion.tsv"
    conda:
        "../envs/canids.yaml"
    params:
        code=stage_code_digest("fusion"),
        settings=settings_of("fusion"),
    script:
        "../scripts/fusion.py"
