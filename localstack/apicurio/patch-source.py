"""Trims a copy of Apicurio Registry's source (tag 3.0.9) to what builds from the Maven Central
reachable here, for scripts/apicurio-registry.sh. Every change only removes what the local test
registry (anonymous, in-memory H2 storage, Confluent-compatible API) does not use; none touches
the registry's API or storage logic. Usage: patch-source.py <source dir>."""
import pathlib
import re
import sys

root = pathlib.Path(sys.argv[1])
app = root / "app"


def sub_once(pattern, replacement, text, what):
    new, n = re.subn(pattern, replacement, text, flags=re.S)
    if n != 1:
        sys.exit(f"patch-source.py: expected one {what}, found {n}")
    return new


# 1. Test-scoped dependencies, from every POM: they pull in the Java SDK, whose code generator
#    (kiota) downloads a binary from outside Maven Central, and test utilities.
test_dep = re.compile(
    r"\s*<dependency>(?:(?!</dependency>).)*<scope>test</scope>(?:(?!</dependency>).)*</dependency>",
    re.S,
)
for pom in root.rglob("pom.xml"):
    text = pom.read_text()
    new = test_dep.sub("", text)
    if new != text:
        pom.write_text(new)

pom = app / "pom.xml"
text = pom.read_text()
# 2. The app's use of Apicurio's own Maven plugin: it merges test properties, and needs the SDK.
text = sub_once(
    r"\s*<plugin>(?:(?!</plugin>).)*<artifactId>apicurio-registry-maven-plugin</artifactId>(?:(?!</plugin>).)*</plugin>",
    "", text, "apicurio-registry-maven-plugin")
# 3. Extensions whose Quarkus 3.15.4 artifacts (or those of their conditional dependencies) are
#    not served here: the MySQL and SQL Server drivers (quarkus-flyway-mysql/-mssql), the
#    properties-file identity store, standalone SmallRye JWT (quarkus-oidc brings the JWT
#    library), Jackson for REST clients.
for ext in ("quarkus-jdbc-mysql", "quarkus-jdbc-mssql",
            "quarkus-elytron-security-properties-file", "quarkus-smallrye-jwt",
            "quarkus-resteasy-client-jackson"):
    text = sub_once(
        r"\s*<dependency>\s*<groupId>io.quarkus</groupId>\s*<artifactId>%s</artifactId>\s*</dependency>" % ext,
        "", text, ext)
pom.write_text(text)

# 4. The MySQL and SQL Server datasources that go with those drivers.
props = app / "src/main/resources/application.properties"
lines = props.read_text().splitlines(keepends=True)
props.write_text("".join(l for l in lines if not re.match(r"quarkus\.datasource\.(mysql|mssql)\.", l)))
producer = app / "src/main/java/io/apicurio/registry/storage/impl/sql/RegistryDatasourceProducer.java"
text = producer.read_text()
for name in ("mysql", "mssql"):
    text = sub_once(r'\s*@Inject\s*@Named\("%s"\)\s*AgroalDataSource \w+;' % name, "", text, name)
    text = sub_once(r"\s*case %s -> \{\s*return \w+;\s*\}" % name, "", text, f"case {name}")
producer.write_text(text)

# 5. Without the SmallRye JWT extension its parser is no CDI bean; its one user (the token
#    expiry of the basic-auth-to-OIDC bridge, unused anonymously) makes its own.
auth = app / "src/main/java/io/apicurio/registry/auth/AppAuthenticationMechanism.java"
text = auth.read_text()
text = sub_once(r"@Inject\s*DefaultJWTParser jwtParser;",
                "DefaultJWTParser jwtParser = new DefaultJWTParser();", text, "jwtParser")
auth.write_text(text)
