//! The issuing side (issue #15): a holder-signed issuance on one core against the sm2 crate's
//! sign-only rate measured in the same run (the goal: at least half of it), the device
//! signature on the table-free fast path against the sm2 crate, enrollments, on in-memory
//! stores (CPU) and on RocksDB (one synced write each), and what a verification for a platform
//! entitled to attributes adds before its nonce is consumed (issue #16): the standing-consent
//! read and the vault opening, on RocksDB.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use cyberid_bench::{ISSUING_NOW as NOW, identity_store, synthetic_document};
use cyberid_engine::{
    Issuer, IssuerPolicy, IssuerSigningKey, MemoryNonceStore, MemoryRevocationSet, NonceStore,
};
use cyberid_identity::{
    DeviceSigningKey, Disclose, EnrollmentRequest, HolderRequest, IdentityService, IdentityStore,
    IndexKey, MemoryRegistry, ServiceConfig, Vault, VaultKey,
};

fn vault() -> Vault {
    let master = VaultKey::generate(1).expect("rng");
    Vault::open(
        &master,
        &[master
            .wrap(&VaultKey::generate(1).expect("rng"))
            .expect("wrap")],
    )
    .expect("vault")
}

fn new_service(store: Arc<dyn IdentityStore>, nonces: Arc<dyn NonceStore>) -> IdentityService {
    IdentityService::new(
        store,
        nonces,
        Arc::new(vault()),
        IndexKey::generate().expect("rng"),
        ServiceConfig::default(),
    )
}

fn memory_service() -> IdentityService {
    new_service(
        Arc::new(MemoryRegistry::new(MemoryRevocationSet::new())),
        Arc::new(MemoryNonceStore::new(NOW - 3600)),
    )
}

/// A new adult's enrollment ([`synthetic_document`]) and a fresh device key.
fn enrollment(serial: u64) -> (EnrollmentRequest, DeviceSigningKey) {
    let device = DeviceSigningKey::generate().expect("rng");
    let request = EnrollmentRequest {
        document: synthetic_document(serial),
        device_key: device.public_key().to_spki_pem().expect("pem"),
        guardian_consent: None,
    };
    (request, device)
}

fn signatures(c: &mut Criterion) {
    let issuer = IssuerSigningKey::generate().expect("rng");
    let message = [0x5au8; 63];
    let mut group = c.benchmark_group("identity/reference");
    group.throughput(Throughput::Elements(1));
    group.bench_function("sm2_crate_sign", |b| {
        b.iter(|| issuer.sign(black_box(&message)).expect("sign"))
    });
    group.finish();

    let device = DeviceSigningKey::generate().expect("rng");
    let signature = device.sign(&message).expect("sign");
    let public = device.public_key();
    let general =
        cyberid_engine::IssuerPublicKey::from_sec1_bytes(&public.to_sec1_bytes()).expect("key");
    let mut group = c.benchmark_group("identity/device_signature");
    group.throughput(Throughput::Elements(1));
    group.bench_function("once_path", |b| {
        b.iter(|| {
            public
                .verify(black_box(&message), black_box(&signature))
                .expect("valid")
        })
    });
    group.bench_function("general_path_sm2_crate", |b| {
        b.iter(|| assert!(general.verify_general(black_box(&message), black_box(&signature))))
    });
    group.finish();
}

fn issuance(c: &mut Criterion) {
    let issuer = Issuer::new(
        IssuerSigningKey::generate().expect("rng"),
        IssuerPolicy::default(),
    )
    .expect("issuer");
    let service = memory_service();
    let (request, phone) = enrollment(1);
    let holder = service
        .enroll(request, "agent", NOW)
        .expect("enroll")
        .web_number;

    let mut group = c.benchmark_group("identity/issue_holder_signed");
    group.throughput(Throughput::Elements(1));
    // The phone's signature is made in setup: it is the holder's cost, not the service's.
    group.bench_function("memory_stores", |b| {
        b.iter_batched(
            || {
                HolderRequest::new(holder, Disclose::Age, NOW)
                    .expect("request")
                    .sign(&phone)
                    .expect("sign")
            },
            |signed| service.issue(&signed, &issuer, NOW).expect("issue"),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

/// Enrollments of new people (serials from `first`) through `service`; the enrollment request
/// with its device key is made in setup, as the holder's phone makes it.
fn bench_enroll(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    service: &IdentityService,
    first: u64,
) {
    let mut serial = first;
    group.bench_function(name, |b| {
        b.iter_batched(
            || {
                serial += 1;
                enrollment(serial).0
            },
            |request| service.enroll(request, "agent", NOW).expect("enroll"),
            BatchSize::SmallInput,
        )
    });
}

fn enrollments(c: &mut Criterion) {
    let mut group = c.benchmark_group("identity/enroll");
    group.throughput(Throughput::Elements(1));
    bench_enroll(&mut group, "memory_stores", &memory_service(), 0);
    let dir = tempfile::tempdir().expect("temp dir");
    let store = identity_store(dir.path());
    bench_enroll(
        &mut group,
        "rocksdb_synced",
        &new_service(store.clone(), store),
        1_000_000,
    );
    group.finish();
}

/// The step before a disclosing verification: read the holder's standing consent, decide,
/// and open the name and identity number from the vault (SM4-GCM) for the answer.
fn disclosure(c: &mut Criterion) {
    use cyberid_engine::{Attribute, Attributes, Certificate, IssueRequest};
    use cyberid_identity::{Entitlement, Purpose, Registry, StandingConsent};
    let dir = tempfile::tempdir().expect("temp dir");
    let store = identity_store(dir.path());
    let service = new_service(store.clone(), store.clone());
    let (request, _) = enrollment(7);
    let holder = service
        .enroll(request, "agent", NOW)
        .expect("enroll")
        .web_number;
    let bank: cyberid_engine::PlatformId = "bank.example".parse().expect("id");
    let both = Attributes::of(&Attribute::ALL);
    let purpose = Purpose::of("opening an account (KYC)");
    store
        .put_consent(
            &holder,
            &StandingConsent {
                platform: bank,
                attributes: both,
                purpose,
                given_at: NOW,
            },
        )
        .expect("consent");
    let entitlement = Entitlement {
        attributes: both,
        purpose,
        granted_at: NOW - 1,
    };
    let issuer = Issuer::new(
        IssuerSigningKey::generate().expect("rng"),
        IssuerPolicy::default(),
    )
    .expect("issuer");
    let certificate: Certificate = issuer
        .issue(
            &IssueRequest {
                audience: Some(bank),
                ..IssueRequest::new(holder)
            },
            NOW,
        )
        .expect("issue");
    let fields = *certificate.fields();

    let mut group = c.benchmark_group("identity/disclose");
    group.throughput(Throughput::Elements(1));
    group.bench_function("consent_and_vault_rocksdb", |b| {
        b.iter(|| {
            let standing = service
                .standing_consent(&fields.web_number, &bank)
                .expect("read");
            let allowed = entitlement.allows(&bank, &fields, standing.as_ref());
            black_box(service.disclose(&fields.web_number, allowed).expect("open"))
        })
    });
    group.finish();
}

criterion_group!(benches, signatures, issuance, enrollments, disclosure);
criterion_main!(benches);
